'use strict';
// One step of an SDK script's report: its result, or the error it raised (recorded, not thrown).

async function step(report, name, fn) {
  try {
    report[name] = { ok: true, result: await fn() };
  } catch (e) {
    report[name] = { ok: false, error: { code: e && e.code, message: String((e && e.message) || e) } };
  }
}

module.exports = { step };
