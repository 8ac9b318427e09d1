#!/usr/bin/env node
// The sample shop app (tests/fixtures/sample_app/cloud/main.py and main.js) through the official Parse JS SDK:
// Cloud functions with validators, errors, save/find/delete triggers and a job.
//
// Environment: PARSE_SERVER_URL (required), PARSE_APP_ID (default "test"), PARSE_MASTER_KEY (default "test").
// Output: one JSON document on stdout, {"scenarios": {name: {"ok", "result" | "error"}}}, with ids and
// timestamps replaced by "<id>"/"<ts>", so that two servers' reports compare as they are.
'use strict';

const Parse = require('parse/node');

const SERVER_URL = process.env.PARSE_SERVER_URL;
const M = { useMasterKey: true };
const TAG = Math.random().toString(36).slice(2, 8);

function norm(value) {
  if (value instanceof Parse.Object) return norm({ className: value.className, ...value.toJSON() });
  if (value instanceof Date) return '<ts>';
  if (value instanceof Parse.Error) return { code: value.code, message: String(value.message) };
  if (Array.isArray(value)) return value.map(norm);
  if (value && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value).sort()) {
      const v = value[key];
      if (key === 'objectId') out[key] = /^[A-Za-z0-9]{10}$/.test(v) ? '<id>' : `<bad-id:${v}>`;
      else if (key === 'createdAt' || key === 'updatedAt') out[key] = '<ts>';
      else if (key === 'sessionToken') out[key] = '<token>';
      else out[key] = norm(v);
    }
    return out;
  }
  return value === undefined ? null : value;
}

async function attempt(fn) {
  try {
    return { value: norm(await fn()) };
  } catch (e) {
    return { error: { code: e.code, message: String(e.message) } };
  }
}

const scenarios = {
  async functions() {
    return {
      hello: await attempt(() => Parse.Cloud.run('hello', { name: 'Ada' })),
      helloMissing: await attempt(() => Parse.Cloud.run('hello', {})),
      helloWrongType: await attempt(() => Parse.Cloud.run('hello', { name: 42 })),
      whoamiAnonymous: await attempt(() => Parse.Cloud.run('whoami')),
      adminWithoutMaster: await attempt(() => Parse.Cloud.run('adminStats')),
      adminWithMaster: await attempt(() => Parse.Cloud.run('adminStats', {}, M)),
      refuse: await attempt(() => Parse.Cloud.run('refuse')),
      crash: await attempt(() => Parse.Cloud.run('crash')),
      unknown: await attempt(() => Parse.Cloud.run('noSuchFunction')),
    };
  },

  async withUser() {
    const user = new Parse.User();
    user.set({ username: `shopper${TAG}`, password: 'pw-123' });
    await user.signUp();
    const who = await attempt(() => Parse.Cloud.run('whoami'));
    await Parse.User.logOut();
    if (who.value) who.value.username = who.value.username.replace(TAG, '');
    return { who, afterLogout: await attempt(() => Parse.Cloud.run('whoami')) };
  },

  async triggers() {
    const Order = Parse.Object.extend('Order');
    try {
      await new Parse.Schema('Order').save(); // clients may not create classes (allowClientClassCreation off)
    } catch (e) {
      if (e.code !== 103) throw e; // it already exists
    }
    const saved = await attempt(() => new Order().save({ qty: 3, price: 5, tag: TAG }));
    const noQty = await attempt(() => new Order().save({ price: 5, tag: TAG }));
    const badQty = await attempt(() => new Order().save({ qty: 0, tag: TAG }));
    const wrongType = await attempt(() => new Order().save({ qty: 'three', tag: TAG }));
    const hidden = await new Order().save({ qty: 1, hidden: true, tag: TAG });
    const paid = await new Order().save({ qty: 2, paid: true, tag: TAG });
    const update = await new Order().save({ qty: 1, tag: TAG });
    update.set('qty', 4);
    const updated = await attempt(() => update.save());
    const visible = await new Parse.Query(Order).equalTo('tag', TAG).ascending('qty').find();
    const all = await new Parse.Query(Order).equalTo('tag', TAG).ascending('qty').find(M);
    const getHidden = await attempt(() => new Parse.Query(Order).get(hidden.id));
    const deletePaid = await attempt(() => paid.destroy(M));
    const deleteOther = await attempt(() => hidden.destroy(M));
    const left = await new Parse.Query(Order).equalTo('tag', TAG).count(M);
    if (deleteOther.value) delete deleteOther.value.tag; // per run
    const strip = (o) => ({ qty: o.get('qty'), total: o.get('total'), status: o.get('status') });
    return {
      saved: saved.value ? { total: saved.value.total, status: saved.value.status, qty: saved.value.qty } : saved,
      noQty, badQty, wrongType,
      updated: updated.value ? { total: updated.value.total, qty: updated.value.qty } : updated,
      visible: visible.map(strip),
      all: all.map(strip),
      getHidden, deletePaid, deleteOther, left,
    };
  },

  async job() {
    const id = await Parse.Cloud.startJob('tally', { label: 'today' });
    let status;
    for (let i = 0; i < 100; i += 1) {
      status = await Parse.Cloud.getJobStatus(id);
      if (['succeeded', 'failed'].includes(status.get('status'))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const unknown = await attempt(() => Parse.Cloud.startJob('noSuchJob', {}));
    return {
      status: status.get('status'),
      message: status.get('message'),
      jobName: status.get('jobName'),
      source: status.get('source'),
      hasFinishedAt: status.get('finishedAt') instanceof Date,
      unknown,
    };
  },
};

async function main() {
  if (!SERVER_URL) throw new Error('PARSE_SERVER_URL is required');
  Parse.initialize(process.env.PARSE_APP_ID || 'test', undefined, process.env.PARSE_MASTER_KEY || 'test');
  Parse.serverURL = SERVER_URL;
  Parse.User.enableUnsafeCurrentUser(); // a current user, as in an app, so requests carry its session
  const out = { scenarios: {} };
  for (const [name, fn] of Object.entries(scenarios)) {
    try {
      out.scenarios[name] = { ok: true, result: await fn() };
    } catch (e) {
      out.scenarios[name] = { ok: false, error: `${e && e.stack ? e.stack : e}` };
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
