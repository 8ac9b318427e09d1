#!/usr/bin/env node
// Reference server for parsectl's differential end-to-end tests: the real node
// parse-server on PostgreSQL, configured the way the reference notes describe.
//
// Configuration (command-line flags win over environment variables):
//   --database-uri / DATABASE_URI   postgres://user:pass@127.0.0.1:PORT/db   (required)
//   --port / PORT                   TCP port on 127.0.0.1                     (default 1337)
//   --app-id / APP_ID               application id                            (default "test")
//   --master-key / MASTER_KEY       master key                                (default "test")
//   --work-dir / WORK_DIR           folder for uploaded files and logs        (default: a new temp dir)
//   --allow-ccc / ALLOW_CCC=1       allowClientClassCreation: true            (default false, as in v9)
//
// When the server is listening it prints exactly one line to stdout:
//   PARSE-REFERENCE-READY {"serverURL": "...", "port": ..., "pid": ...}
// It exits on SIGTERM/SIGINT.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      throw new Error(`unexpected argument ${arg}`);
    }
    const eq = arg.indexOf('=');
    if (eq > 0) {
      out[arg.slice(2, eq)] = arg.slice(eq + 1);
    } else if (arg === '--allow-ccc') {
      out['allow-ccc'] = '1';
    } else {
      out[arg.slice(2)] = argv[++i];
    }
  }
  return out;
}

function truthy(value) {
  return value !== undefined && value !== '' && !['0', 'false', 'no', 'off'].includes(String(value).toLowerCase());
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const databaseURI = args['database-uri'] || process.env.DATABASE_URI;
  if (!databaseURI) {
    throw new Error('a database URI is required (--database-uri or DATABASE_URI)');
  }
  const port = Number(args.port || process.env.PORT || 1337);
  const appId = args['app-id'] || process.env.APP_ID || 'test';
  const masterKey = args['master-key'] || process.env.MASTER_KEY || 'test';
  const allowClientClassCreation = truthy(args['allow-ccc'] || process.env.ALLOW_CCC);
  const givenWorkDir = args['work-dir'] || process.env.WORK_DIR;
  const workDir = givenWorkDir || fs.mkdtempSync(path.join(os.tmpdir(), 'parse-ref-'));
  fs.mkdirSync(workDir, { recursive: true });
  // FSFilesAdapter and the file logger write relative to the working directory.
  process.chdir(workDir);

  const express = require('express');
  const { ParseServer } = require('parse-server');
  const FSFilesAdapter = require('@parse/fs-files-adapter');

  const serverURL = `http://127.0.0.1:${port}/parse`;
  const server = new ParseServer({
    databaseURI,
    appId,
    masterKey,
    serverURL,
    mountPath: '/parse',
    masterKeyIps: ['127.0.0.1', '::1', '::ffff:127.0.0.1'],
    filesAdapter: new FSFilesAdapter(),
    allowClientClassCreation,
    logsFolder: path.join(workDir, 'logs'),
    logLevel: process.env.PARSE_LOG_LEVEL || 'error',
    silent: !truthy(process.env.PARSE_VERBOSE),
    ...(process.env.CLOUD ? { cloud: process.env.CLOUD } : {}),
  });
  await server.start();

  const app = express();
  app.use('/parse', server.app);
  const httpServer = await new Promise((resolve, reject) => {
    const s = app.listen(port, '127.0.0.1', (err) => (err ? reject(err) : resolve(s)));
    s.on('error', reject);
  });

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) {
      return;
    }
    stopping = true;
    const timer = setTimeout(() => process.exit(0), 3000);
    timer.unref();
    try {
      httpServer.closeAllConnections && httpServer.closeAllConnections();
      await new Promise((resolve) => httpServer.close(() => resolve()));
      await server.handleShutdown();
    } catch (e) {
      process.stderr.write(`shutdown after ${signal}: ${e && e.stack}\n`);
    }
    if (!givenWorkDir) {
      fs.rmSync(workDir, { recursive: true, force: true });
    }
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  process.stdout.write(
    `PARSE-REFERENCE-READY ${JSON.stringify({ serverURL, port, pid: process.pid, workDir, allowClientClassCreation })}\n`
  );
}

main().catch((err) => {
  process.stderr.write(`reference-server failed: ${(err && err.stack) || err}\n`);
  process.exit(1);
});
