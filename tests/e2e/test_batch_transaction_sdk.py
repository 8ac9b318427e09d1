"""The JS SDK's ``Parse.Object.saveAll(objects, {transaction: true})`` against parsectl: all or nothing."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.support import JS_DIR
from tests.support.reference import ensure_npm_ci, node_bin
from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow

SCRIPT = r"""
const Parse = require('parse/node');
Parse.initialize(process.env.APP_ID, undefined, process.env.MASTER_KEY);
Parse.serverURL = process.env.SERVER_URL;
Parse.CoreManager.set('REQUEST_ATTEMPT_LIMIT', 1);
const cls = process.env.CLS;
(async () => {
  const out = {};
  const seed = new Parse.Object(cls, {n: 0});
  await seed.save(null, {useMasterKey: true});
  const good = [1, 2, 3].map(n => new Parse.Object(cls, {n}));
  await Parse.Object.saveAll(good, {transaction: true, useMasterKey: true});
  out.saved = good.every(o => !!o.id);
  const bad = [new Parse.Object(cls, {n: 4}), new Parse.Object(cls, {n: 'five'})];
  try {
    await Parse.Object.saveAll(bad, {transaction: true, useMasterKey: true});
    out.failed = null;
  } catch (e) {
    out.failed = (Array.isArray(e) ? e : [e]).map(err => ({code: err.code, message: err.message}));
  }
  const all = await new Parse.Query(cls).ascending('n').find({useMasterKey: true});
  out.values = all.map(o => o.get('n'));
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_sdk_save_all_in_a_transaction(parsectl_server: RunningServer) -> None:
    ensure_npm_ci()
    env = {"APP_ID": parsectl_server.app_id, "MASTER_KEY": parsectl_server.master_key,
           "SERVER_URL": parsectl_server.server_url, "CLS": "Tx" + uuid.uuid4().hex[:8], "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([node_bin(), "-e", SCRIPT], cwd=JS_DIR, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["saved"] is True
    # the SDK rejects with one error per object of the failed batch, each the server's error
    assert out["failed"] and all(f["code"] == 111 and "schema mismatch" in f["message"] for f in out["failed"]), out
    assert out["values"] == [0, 1, 2, 3]  # nothing of the failed transaction was written
