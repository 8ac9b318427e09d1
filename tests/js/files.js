#!/usr/bin/env node
// Parse.File with the official JS SDK against a server, for tests/e2e/test_files_sdk.py.
//
// Environment: PARSE_SERVER_URL (required), PARSE_APP_ID ("test"), PARSE_MASTER_KEY ("test").
// Output: one JSON document on stdout with what each step saw; a step's failure is recorded, not thrown.
'use strict';

const Parse = require('parse/node');
const { step } = require('./step');

const SERVER_URL = process.env.PARSE_SERVER_URL;
const APP_ID = process.env.PARSE_APP_ID || 'test';
const MASTER_KEY = process.env.PARSE_MASTER_KEY || 'test';
const TAG = Math.random().toString(36).slice(2, 8);
const M = { useMasterKey: true };

async function fetchText(url, headers) {
  const r = await fetch(url, { headers: headers || {} });
  return {
    status: r.status,
    contentType: r.headers.get('content-type'),
    nosniff: r.headers.get('x-content-type-options'),
    contentRange: r.headers.get('content-range'),
    body: await r.text(),
  };
}

async function main() {
  Parse.initialize(APP_ID, undefined, MASTER_KEY);
  Parse.serverURL = SERVER_URL;
  const report = { sdkVersion: Parse.CoreManager.get('VERSION') };
  let saved = null;

  await step(report, 'public_upload', async () => {
    const file = new Parse.File('public.txt', { base64: Buffer.from('nope').toString('base64') });
    await file.save();
    return { name: file.name() };
  });

  await step(report, 'base64_upload', async () => {
    const file = new Parse.File('a.txt', { base64: Buffer.from('hello from the sdk').toString('base64') });
    await file.save(M);
    saved = file;
    return { name: file.name(), url: file.url() };
  });

  await step(report, 'attach_and_query', async () => {
    const Doc = Parse.Object.extend(`FileDoc_${TAG}`);
    const doc = new Doc();
    doc.set('attachment', saved);
    await doc.save(null, M);
    const fetched = await new Parse.Query(Doc).get(doc.id, M);
    const file = fetched.get('attachment');
    return { isFile: file instanceof Parse.File, name: file.name(), url: file.url() };
  });

  // Files inside an array and an object come back with their URL (a File without one cannot be re-encoded)
  await step(report, 'nested_files', async () => {
    const Doc = Parse.Object.extend(`FileDoc_${TAG}`);
    const doc = new Doc();
    doc.set('gallery', [saved]);
    doc.set('meta', { cover: saved });
    await doc.save(null, M);
    const [found] = await new Parse.Query(Doc).equalTo('objectId', doc.id).find(M);
    found.set('touched', true);
    await found.save(null, M); // the SDK encodes the nested Files again
    const fetched = await new Parse.Query(Doc).get(doc.id, M);
    return { gallery: fetched.get('gallery').map((f) => f.url()), cover: fetched.get('meta').cover.url() };
  });

  await step(report, 'download', async () => fetchText(saved.url()));
  await step(report, 'range', async () => fetchText(saved.url(), { Range: 'bytes=0-4' }));

  await step(report, 'buffer_upload', async () => {
    const file = new Parse.File('b.bin', Buffer.from([0, 1, 2, 250, 255]), 'application/octet-stream');
    await file.save(M);
    const r = await fetch(file.url());
    return { name: file.name(), status: r.status, bytes: Array.from(new Uint8Array(await r.arrayBuffer())) };
  });

  await step(report, 'destroy', async () => {
    await saved.destroy(M);
    return fetchText(saved.url());
  });

  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch(e => {
  process.stderr.write(String((e && e.stack) || e) + '\n');
  process.exit(1);
});
