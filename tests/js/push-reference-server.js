#!/usr/bin/env node
// node parse-server on PostgreSQL with push configured, for tests/e2e/test_push_reference.py.
//
// Environment: DATABASE_URI (required), PORT, APP_ID ("test"), MASTER_KEY ("test"), WORK_DIR.
// The push adapter is a recording one (no network): every installation with a token counts as sent,
// except tokens starting with "bad-", which fail with APNs' "BadDeviceToken". It answers
// GET /pushlog with what it was given (body and installations of each send call).
'use strict';

const path = require('path');

async function main() {
  const databaseURI = process.env.DATABASE_URI;
  const port = Number(process.env.PORT || 1337);
  const appId = process.env.APP_ID || 'test';
  const masterKey = process.env.MASTER_KEY || 'test';
  const workDir = process.env.WORK_DIR || process.cwd();
  process.chdir(workDir);
  const express = require('express');
  const { ParseServer } = require('parse-server');

  const sends = [];
  const adapter = {
    getValidPushTypes: () => ['ios', 'android'],
    send(body, installations) {
      sends.push({ body, tokens: installations.map(i => i.deviceToken).sort() });
      return Promise.resolve(installations.map(i => {
        const device = { deviceToken: i.deviceToken, deviceType: i.deviceType };
        return i.deviceToken.startsWith('bad-')
          ? { transmitted: false, device, response: { error: 'BadDeviceToken' } }
          : { transmitted: true, device };
      }));
    },
  };
  const serverURL = `http://127.0.0.1:${port}/parse`;
  const server = new ParseServer({
    databaseURI, appId, masterKey, serverURL, mountPath: '/parse', readOnlyMasterKey: 'read-only',
    masterKeyIps: ['127.0.0.1', '::1', '::ffff:127.0.0.1'],
    push: { adapter },
    logsFolder: path.join(workDir, 'logs'), logLevel: 'error', silent: true,
  });
  await server.start();
  const app = express();
  app.get('/pushlog', (req, res) => res.json(sends));
  app.use('/parse', server.app);
  const httpServer = app.listen(port, '127.0.0.1');
  const stop = () => {
    httpServer.close();
    server.handleShutdown().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch(err => {
  process.stderr.write(`push-reference-server failed: ${(err && err.stack) || err}\n`);
  process.exit(1);
});
