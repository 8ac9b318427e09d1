#!/usr/bin/env node
// Users, sessions, ACLs, roles, CLPs and protected fields through the official Parse JS SDK.
//
// Environment: PARSE_SERVER_URL (required), PARSE_APP_ID (default "test"), PARSE_MASTER_KEY (default "test"),
// SCENARIO_TAG (suffix for user, role and class names; default random; removed from the output).
// Output: one JSON document on stdout, {"sdkVersion", "scenarios": {name: {"ok", "result" | "error"}}}, with
// objectIds, timestamps and session tokens replaced by "<id>"/"<id:label>", "<ts>" and "<token>" after a shape
// check, so that two servers' reports compare as they are.
'use strict';

const Parse = require('parse/node');

const SERVER_URL = process.env.PARSE_SERVER_URL;
const APP_ID = process.env.PARSE_APP_ID || 'test';
const MASTER_KEY = process.env.PARSE_MASTER_KEY || 'test';
const TAG = process.env.SCENARIO_TAG || Math.random().toString(36).slice(2, 8);
const M = { useMasterKey: true };

const ID_RE = /^[A-Za-z0-9]{10}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const TOKEN_RE = /^r:[0-9a-f]{32}$/;
const labels = new Map();

const t = (base) => `${base}${TAG}`;
const stripTag = (s) => s.split(TAG).join('');

function label(obj, name) {
  labels.set(obj.id, name);
  return obj;
}

function normId(v) {
  if (typeof v !== 'string') return `<bad-id:${JSON.stringify(v)}>`;
  if (v.startsWith('<')) return v;
  if (labels.has(v)) return `<id:${labels.get(v)}>`;
  return ID_RE.test(v) ? '<id>' : `<bad-id:${v}>`;
}

function norm(value) {
  if (value instanceof Parse.Object) return norm({ className: value.className, ...value.toJSON() });
  if (value instanceof Date) return '<ts>';
  if (value instanceof Parse.Error) return { code: value.code, message: stripTag(String(value.message)) };
  if (value && typeof value.toJSON === 'function' && !Array.isArray(value)) return norm(value.toJSON());
  if (Array.isArray(value)) return value.map(norm);
  if (value && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value).sort()) {
      const v = value[key];
      const k = labels.has(key) ? `<id:${labels.get(key)}>` : stripTag(key);
      if (key === 'objectId') out[k] = normId(v);
      else if (key === 'createdAt' || key === 'updatedAt') out[k] = typeof v === 'string' && (ISO_RE.test(v) || v === '<ts>') ? '<ts>' : `<bad-ts:${v}>`;
      else if (key === 'sessionToken') out[k] = TOKEN_RE.test(v) || v === '<token>' ? '<token>' : `<bad-token:${v}>`;
      else out[k] = norm(v);
    }
    return out;
  }
  if (typeof value === 'string') return labels.has(value) ? `<id:${labels.get(value)}>` : stripTag(value);
  if (value === undefined) return null;
  return value;
}

function errorOf(e) {
  if (e && typeof e.code === 'number') return { code: e.code, message: stripTag(String(e.message)) };
  return { code: null, message: String((e && e.stack) || e) };
}

async function attempt(fn) {
  try {
    return { value: norm(await fn()) };
  } catch (e) {
    return { error: errorOf(e) };
  }
}

async function signUp(name, extra = {}) {
  const u = new Parse.User();
  u.set({ username: t(name), password: `${name}-pw`, email: `${t(name)}@example.com`, ...extra });
  await u.signUp();
  label(u, name);
  return u;
}

const scenarios = {};

// signUp, current, logOut, logIn, become, errors.
scenarios.signup_login_become = async () => {
  const out = {};
  const ann = await signUp('ann', { phone: '555' });
  out.signup = norm(ann);
  out.signupHasToken = TOKEN_RE.test(ann.getSessionToken());
  out.currentAfterSignup = Parse.User.current() && Parse.User.current().id === ann.id;
  out.isCurrent = ann.isCurrent();
  const token1 = ann.getSessionToken();
  await Parse.User.logOut();
  out.currentAfterLogout = Parse.User.current() === null;
  out.oldTokenAfterLogout = await attempt(() => Parse.User.become(token1));
  const again = await Parse.User.logIn(t('ann'), 'ann-pw');
  out.login = norm(again);
  out.loginNewToken = again.getSessionToken() !== token1;
  out.currentAfterLogin = Parse.User.current().id === ann.id;
  const token2 = again.getSessionToken();
  const became = await Parse.User.become(token2);
  out.become = { username: became.get('username'), email: became.get('email'), phone: became.get('phone') };
  out.currentAfterBecome = Parse.User.current().id === ann.id;
  out.currentAsync = (await Parse.User.currentAsync()).get('username');
  out.me = norm(await Parse.User.me(token2));
  out.wrongPassword = await attempt(() => Parse.User.logIn(t('ann'), 'nope'));
  out.unknownUser = await attempt(() => Parse.User.logIn(t('nobody'), 'x'));
  out.duplicateUsername = await attempt(() => new Parse.User({ username: t('ANN'), password: 'x' }).signUp());
  out.duplicateEmail = await attempt(() =>
    new Parse.User({ username: t('ann2'), password: 'x', email: `${t('ann').toUpperCase()}@example.com` }).signUp()
  );
  out.missingPassword = await attempt(() => new Parse.User({ username: t('nopw') }).signUp());
  out.badToken = await attempt(() => Parse.User.become('r:00000000000000000000000000000000'));
  out.logInWithEmailAsUsername = await attempt(async () => (await Parse.User.logIn(`${t('ann')}@example.com`, 'ann-pw')).get('username'));
  await Parse.User.logOut();
  return out;
};

// Anonymous users (authData.anonymous), then converting one into a regular user.
scenarios.anonymous = async () => {
  const out = {};
  const anon = await Parse.AnonymousUtils.logIn();
  label(anon, 'anon');
  out.user = norm(anon);
  out.user.username = /^[A-Za-z0-9]{25}$/.test(out.user.username) ? '<random25>' : out.user.username;
  const anonId = ((out.user.authData || {}).anonymous || {}).id;
  if (typeof anonId === 'string' && /^[0-9a-f-]{36}$/.test(anonId)) out.user.authData.anonymous.id = '<uuid>';
  out.isLinked = Parse.AnonymousUtils.isLinked(anon);
  out.hasToken = TOKEN_RE.test(anon.getSessionToken() || '');
  out.usernameIsRandom = typeof anon.get('username') === 'string' && anon.get('username').length === 25;
  out.current = Parse.User.current() && Parse.User.current().id === anon.id;
  out.fetched = await attempt(async () => {
    const me = await Parse.User.me(anon.getSessionToken());
    return { isLinked: Parse.AnonymousUtils.isLinked(me), anon: Boolean(me.get('authData') && me.get('authData').anonymous) };
  });
  // Convert: a username and password on the anonymous user, saved.
  anon.set({ username: t('converted'), password: 'conv-pw' });
  out.convert = await attempt(async () => {
    await anon.save();
    return { isLinked: Parse.AnonymousUtils.isLinked(anon) };
  });
  out.loginConverted = await attempt(async () => (await Parse.User.logIn(t('converted'), 'conv-pw')).id === anon.id);
  await Parse.User.logOut();
  return out;
};

// Object ACLs: private, public read, roles with inheritance.
scenarios.acl_roles = async () => {
  const Doc = t('AclDoc');
  const out = {};
  await Parse.User.logOut();
  const alice = await signUp('alice');
  const aliceToken = alice.getSessionToken();
  const bob = await signUp('bob');
  const bobToken = bob.getSessionToken();
  const as = (token) => ({ sessionToken: token });
  await new Parse.Object(Doc, { name: 'seed' }).save(null, M);

  const priv = new Parse.Object(Doc, { name: 'private' });
  priv.setACL(new Parse.ACL(alice));
  await priv.save(null, as(aliceToken));
  label(priv, 'private');
  out.privateAcl = norm(priv.getACL());
  out.aliceGetsPrivate = await attempt(async () => (await new Parse.Query(Doc).get(priv.id, as(aliceToken))).get('name'));
  out.bobGetsPrivate = await attempt(() => new Parse.Query(Doc).get(priv.id, as(bobToken)));
  out.anonymousGetsPrivate = await attempt(() => new Parse.Query(Doc).get(priv.id));
  out.bobFinds = (await new Parse.Query(Doc).ascending('name').find(as(bobToken))).map((o) => o.get('name'));
  out.bobCounts = await new Parse.Query(Doc).exists('name').count(as(bobToken));
  const bobsCopy = Parse.Object.extend(Doc).createWithoutData(priv.id);
  bobsCopy.set('name', 'hacked');
  out.bobUpdatesPrivate = await attempt(() => bobsCopy.save(null, as(bobToken)));
  out.bobDeletesPrivate = await attempt(() => bobsCopy.destroy(as(bobToken)));

  const pub = new Parse.Object(Doc, { name: 'public-read' });
  const pubAcl = new Parse.ACL(alice);
  pubAcl.setPublicReadAccess(true);
  pub.setACL(pubAcl);
  await pub.save(null, as(aliceToken));
  label(pub, 'pub');
  out.bobGetsPublic = await attempt(async () => (await new Parse.Query(Doc).get(pub.id, as(bobToken))).get('name'));
  const bobsPub = Parse.Object.extend(Doc).createWithoutData(pub.id);
  bobsPub.set('name', 'hacked');
  out.bobUpdatesPublic = await attempt(() => bobsPub.save(null, as(bobToken)));

  // Roles: Mods lists alice; Staff lists Mods in its roles, so Mods' members get Staff's access.
  const roleAcl = new Parse.ACL();
  roleAcl.setPublicReadAccess(true);
  const mods = new Parse.Role(t('Mods'), roleAcl);
  mods.getUsers().add(alice);
  await mods.save(null, M);
  label(mods, 'Mods');
  const staff = new Parse.Role(t('Staff'), roleAcl);
  staff.getRoles().add(mods);
  await staff.save(null, M);
  label(staff, 'Staff');
  const staffDoc = new Parse.Object(Doc, { name: 'staff-only' });
  const staffAcl = new Parse.ACL();
  staffAcl.setRoleReadAccess(t('Staff'), true);
  staffAcl.setRoleWriteAccess(staff, true);
  staffDoc.setACL(staffAcl);
  await staffDoc.save(null, M);
  label(staffDoc, 'staffDoc');
  out.staffAcl = norm(staffDoc.getACL());
  out.aliceGetsStaffDoc = await attempt(async () => (await new Parse.Query(Doc).get(staffDoc.id, as(aliceToken))).get('name'));
  out.bobGetsStaffDoc = await attempt(() => new Parse.Query(Doc).get(staffDoc.id, as(bobToken)));
  out.aliceUpdatesStaffDoc = await attempt(async () => {
    const o = Parse.Object.extend(Doc).createWithoutData(staffDoc.id);
    o.set('name', 'staff-edited');
    await o.save(null, as(aliceToken));
    return o.get('name');
  });
  out.rolesQuery = (await new Parse.Query(Parse.Role).containedIn('name', [t('Mods'), t('Staff')]).ascending('name').find())
    .map((r) => r.getName());
  out.modsUsers = (await mods.getUsers().query().find(M)).map((u) => u.get('username'));
  // Bob cannot add himself to a role he cannot write.
  out.bobJoinsMods = await attempt(async () => {
    const r = Parse.Role.createWithoutData(mods.id);
    r.getUsers().add(bob);
    await r.save(null, as(bobToken));
  });
  out.bobGetsStaffDocAfter = await attempt(() => new Parse.Query(Doc).get(staffDoc.id, as(bobToken)));
  return out;
};

// Class-level permissions and pointer permissions, set with Parse.Schema (master key).
scenarios.clp_pointer_permissions = async () => {
  const Note = t('Note');
  const out = {};
  await Parse.User.logOut();
  const owner = await signUp('owner');
  const ownerToken = owner.getSessionToken();
  const other = await signUp('other');
  const otherToken = other.getSessionToken();
  const as = (token) => ({ sessionToken: token });

  const schema = new Parse.Schema(Note);
  schema.addString('text').addPointer('owner', '_User').addString('secret');
  schema.setCLP({
    find: { requiresAuthentication: true },
    get: { requiresAuthentication: true },
    count: { requiresAuthentication: true },
    create: { '*': true },
    update: {},
    delete: {},
    addField: {},
    readUserFields: ['owner'],
    writeUserFields: ['owner'],
    protectedFields: { '*': ['secret'], 'userField:owner': [] },
  });
  await schema.save();
  out.clp = norm((await new Parse.Schema(Note).get()).classLevelPermissions);

  const note = new Parse.Object(Note, { text: 'hello', owner, secret: 's3cret' });
  await note.save(null, as(ownerToken));
  label(note, 'note');
  out.ownerFind = (await new Parse.Query(Note).find(as(ownerToken))).map((n) => [n.get('text'), n.get('secret') || null]);
  out.otherFind = (await new Parse.Query(Note).find(as(otherToken))).map((n) => n.get('text'));
  out.otherGet = await attempt(() => new Parse.Query(Note).get(note.id, as(otherToken)));
  out.ownerGet = await attempt(async () => (await new Parse.Query(Note).get(note.id, as(ownerToken))).get('text'));
  const otherCopy = Parse.Object.extend(Note).createWithoutData(note.id);
  otherCopy.set('text', 'hacked');
  out.otherUpdate = await attempt(() => otherCopy.save(null, as(otherToken)));
  out.ownerUpdate = await attempt(async () => {
    const o = Parse.Object.extend(Note).createWithoutData(note.id);
    o.set('text', 'edited');
    await o.save(null, as(ownerToken));
    return 'ok';
  });
  out.addField = await attempt(async () => {
    const o = await new Parse.Object(Note, { text: 'x', extra: 1, owner }).save(null, as(ownerToken));
    await o.destroy(M); // so that the answers below do not depend on this one
    return 'created';
  });
  out.masterSees = (await new Parse.Query(Note).find(M)).map((n) => [n.get('text'), n.get('secret')]);
  out.otherDelete = await attempt(() => Parse.Object.extend(Note).createWithoutData(note.id).destroy(as(otherToken)));
  // The CLP, set by the REST /schemas route: closing find to everybody.
  out.restUpdate = await attempt(async () => {
    const s = new Parse.Schema(Note);
    s.setCLP({ find: {}, get: { requiresAuthentication: true }, count: {}, create: { '*': true }, update: {},
      delete: {}, addField: {}, readUserFields: ['owner'], writeUserFields: ['owner'] });
    await s.update();
    return 'ok';
  });
  out.ownerFindClosed = await attempt(async () => (await new Parse.Query(Note).find(as(ownerToken))).map((n) => n.get('text')));
  await Parse.User.logOut();
  out.anonymousFind = await attempt(() => new Parse.Query(Note).find());
  out.anonymousGet = await attempt(() => new Parse.Query(Note).get(note.id));
  return out;
};

// protectedFields on _User: other users do not see email; the user sees their own.
scenarios.protected_fields = async () => {
  const out = {};
  await Parse.User.logOut();
  const pub = await signUp('pubuser');
  const acl = new Parse.ACL(pub);
  acl.setPublicReadAccess(true);
  pub.setACL(acl);
  await pub.save();
  const pubToken = pub.getSessionToken();
  const viewer = await signUp('viewer');
  const viewerToken = viewer.getSessionToken();
  const seen = await new Parse.Query(Parse.User).get(pub.id, { sessionToken: viewerToken });
  out.otherSees = norm(seen);
  out.otherSeesEmail = seen.get('email') === undefined ? null : seen.get('email');
  out.queryByEmail = await attempt(() =>
    new Parse.Query(Parse.User).equalTo('email', `${t('pubuser')}@example.com`).find({ sessionToken: viewerToken })
  );
  out.selfSees = (await new Parse.Query(Parse.User).get(pub.id, { sessionToken: pubToken })).get('email');
  out.masterSees = (await new Parse.Query(Parse.User).get(pub.id, M)).get('email');
  out.anonymousSees = await attempt(async () => {
    const u = await new Parse.Query(Parse.User).get(pub.id);
    return [u.get('username'), u.get('email') || null];
  });
  out.privateUserFromOther = await attempt(() => new Parse.Query(Parse.User).get(viewer.id, { sessionToken: pubToken }));
  await Parse.User.logOut();
  return out;
};

// Password change through user.set('password') + save: a new session token; the old one is revoked.
scenarios.password_change = async () => {
  const out = {};
  await Parse.User.logOut();
  const carl = await signUp('carl');
  const oldToken = carl.getSessionToken();
  carl.set('password', 'carl-new-pw');
  await carl.save();
  const newToken = carl.getSessionToken();
  out.newTokenShape = TOKEN_RE.test(newToken || '');
  out.tokenChanged = newToken !== oldToken;
  out.currentToken = Parse.User.current().getSessionToken() === newToken;
  out.oldTokenBecome = await attempt(() => Parse.User.become(oldToken));
  out.newTokenBecome = await attempt(async () => (await Parse.User.become(newToken)).get('username'));
  out.loginOld = await attempt(() => Parse.User.logIn(t('carl'), 'carl-pw'));
  out.loginNew = await attempt(async () => (await Parse.User.logIn(t('carl'), 'carl-new-pw')).get('username'));
  await Parse.User.logOut();
  return out;
};

async function main() {
  if (!SERVER_URL) throw new Error('PARSE_SERVER_URL is required');
  Parse.initialize(APP_ID);
  Parse.masterKey = MASTER_KEY;
  Parse.serverURL = SERVER_URL;
  Parse.CoreManager.set('REQUEST_ATTEMPT_LIMIT', 1);
  Parse.User.enableUnsafeCurrentUser();
  const report = { sdkVersion: Parse.CoreManager.get('VERSION'), scenarios: {} };
  for (const name of Object.keys(scenarios)) {
    try {
      report.scenarios[name] = { ok: true, result: norm(await scenarios[name]()) };
    } catch (e) {
      report.scenarios[name] = { ok: false, error: errorOf(e) };
    }
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`users.js failed: ${(err && err.stack) || err}\n`);
    process.exit(2);
  }
);
