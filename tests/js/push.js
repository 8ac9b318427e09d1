#!/usr/bin/env node
// Parse.Push with the official JS SDK against a server, for tests/e2e/test_push_sdk.py.
//
// Environment: PARSE_SERVER_URL (required), PARSE_APP_ID ("test"), PARSE_MASTER_KEY ("test"), PUSH_TOPIC.
// Output: one JSON document on stdout with what each step saw; a step's failure is recorded, not thrown.
'use strict';

const Parse = require('parse/node');
const { step } = require('./step');

const SERVER_URL = process.env.PARSE_SERVER_URL;
const APP_ID = process.env.PARSE_APP_ID || 'test';
const MASTER_KEY = process.env.PARSE_MASTER_KEY || 'test';
const TOPIC = process.env.PUSH_TOPIC;
const M = { useMasterKey: true };

async function settled(id) {
  for (let i = 0; i < 100; i += 1) {
    const status = await Parse.Push.getPushStatus(id, M);
    if (!['pending', 'running'].includes(status.get('status'))) {
      return status;
    }
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  throw new Error(`push ${id} did not finish`);
}

async function main() {
  Parse.initialize(APP_ID, undefined, MASTER_KEY);
  Parse.serverURL = SERVER_URL;
  const report = { sdkVersion: Parse.CoreManager.get('VERSION') };

  await step(report, 'installations', async () => {
    const made = [
      { deviceType: 'ios', deviceToken: 'sdk-ios-1', appIdentifier: TOPIC, channels: ['sdk'], badge: 1 },
      { deviceType: 'android', deviceToken: 'sdk-android-1', channels: ['sdk'] },
      { deviceType: 'ios', deviceToken: 'sdk-ios-2', appIdentifier: TOPIC, channels: ['other'] },
    ];
    for (const [i, fields] of made.entries()) {
      const installation = new Parse.Installation();
      await installation.save({ ...fields, installationId: `sdk-installation-${i}` }, M);
    }
    return made.length;
  });

  await step(report, 'send_channels', async () => {
    const id = await Parse.Push.send({ channels: ['sdk'], data: { alert: 'from the sdk', badge: 'Increment' } }, M);
    const status = await settled(id);
    return { id, status: status.get('status'), numSent: status.get('numSent'),
             sentPerType: status.get('sentPerType'), query: status.get('query'), source: status.get('source') };
  });

  await step(report, 'send_query', async () => {
    const where = new Parse.Query(Parse.Installation).equalTo('deviceToken', 'sdk-ios-2');
    const id = await Parse.Push.send({ where, data: { alert: 'by query', 'content-available': 1 } }, M);
    const status = await settled(id);
    return { status: status.get('status'), numSent: status.get('numSent'), query: status.get('query') };
  });

  await step(report, 'badges', async () => {
    const rows = await new Parse.Query(Parse.Installation).ascending('deviceToken').find(M);
    return rows.map(r => [r.get('deviceToken'), r.get('badge') === undefined ? null : r.get('badge')]);
  });

  await step(report, 'without_master', async () => {
    await Parse.Push.send({ channels: ['sdk'], data: { alert: 'x' } }, { useMasterKey: false });
    return 'sent';
  });

  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch(e => {
  process.stderr.write(String((e && e.stack) || e) + '\n');
  process.exit(1);
});
