// Parse Dashboard (npm parse-dashboard) on 127.0.0.1, pointed at a Parse server, for the dashboard end-to-end test.
//   PARSE_SERVER_URL, PARSE_APP_ID, PARSE_MASTER_KEY  the server to manage
//   DASHBOARD_PORT                                    port to listen on (0: any free port)
// Prints one JSON line {"url": "http://127.0.0.1:PORT/dashboard/"} once it listens; stops on SIGTERM.
'use strict';

const express = require('express');
const ParseDashboard = require('parse-dashboard');

const serverURL = process.env.PARSE_SERVER_URL;
const appId = process.env.PARSE_APP_ID || 'test';
const masterKey = process.env.PARSE_MASTER_KEY || 'test';
if (!serverURL) {
  console.error('dashboard-server.js: set PARSE_SERVER_URL');
  process.exit(2);
}

// No users: parse-dashboard then serves only requests from localhost, which is all this test sends.
const dashboard = new ParseDashboard(
  { apps: [{ serverURL, appId, masterKey, appName: 'parsectl-e2e' }] },
  { allowInsecureHTTP: true, cookieSessionSecret: 'parsectl-dashboard-e2e' },
);

const app = express();
app.use('/dashboard', dashboard);
const server = app.listen(Number(process.env.DASHBOARD_PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  console.log(JSON.stringify({ url: `http://127.0.0.1:${port}/dashboard/` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
