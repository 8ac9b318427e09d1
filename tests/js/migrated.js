#!/usr/bin/env node
// A migrated hosted-Parse export, driven with the official JS SDK, for tests/e2e/test_migrate.py: users log
// in with their old passwords, objects read back, pointer and relation queries, roles and their inheritance,
// ACLs, and file URLs. The same script runs against node parse-server and `parsectl serve`.
//
// Environment: PARSE_SERVER_URL (required), PARSE_APP_ID ("test"), PARSE_MASTER_KEY ("test"), EXPECT (the
// path of a JSON file naming the objects and users to use; see test_migrate.py).
// Output: one JSON document on stdout with what each step saw; a step's failure is recorded, not thrown.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const Parse = require('parse/node');
const { step } = require('./step');

const SERVER_URL = process.env.PARSE_SERVER_URL;
const APP_ID = process.env.PARSE_APP_ID || 'test';
const MASTER_KEY = process.env.PARSE_MASTER_KEY || 'test';
const EXPECT = JSON.parse(fs.readFileSync(process.env.EXPECT, 'utf8'));
const M = { useMasterKey: true };

function pointer(className, id) {
  const obj = new Parse.Object(className);
  obj.id = id;
  return obj;
}

// what a user may do with an object: read it, and write it (an unchanged field set again)
async function access(user, className, id) {
  const session = { sessionToken: (await Parse.User.logIn(user.username, user.password)).getSessionToken() };
  const out = {};
  try {
    const obj = await new Parse.Query(className).get(id, session);
    out.read = true;
    try {
      obj.set('touchedBy', user.username);
      await obj.save(null, session);
      out.write = true;
    } catch (e) {
      out.write = e.code;
    }
  } catch (e) {
    out.read = e.code;
  }
  await Parse.User.logOut();
  return out;
}

async function main() {
  Parse.initialize(APP_ID, undefined, MASTER_KEY);
  Parse.serverURL = SERVER_URL;
  const report = { sdkVersion: Parse.CoreManager.get('VERSION') };

  await step(report, 'logins', async () => {
    const ids = {};
    for (const user of EXPECT.logins) {
      const u = await Parse.User.logIn(user.username, user.password);
      ids[user.username] = u.id;
      await Parse.User.logOut();
    }
    return ids;
  });

  await step(report, 'wrong_password', async () => {
    try {
      await Parse.User.logIn(EXPECT.logins[0].username, 'not the password');
      return 'logged in';
    } catch (e) {
      return e.code;
    }
  });

  await step(report, 'post', async () => {
    const post = await new Parse.Query('Post').get(EXPECT.post.objectId, M);
    return {
      title: post.get('title'), createdAt: post.createdAt.toISOString(), updatedAt: post.updatedAt.toISOString(),
      tags: post.get('tags'), author: post.get('author').id, authorClass: post.get('author').className,
    };
  });

  await step(report, 'comments_on_post', async () => {
    const query = new Parse.Query('Comment').equalTo('post', pointer('Post', EXPECT.post.objectId));
    const comments = await query.include('post').find(M);
    return { count: comments.length, included: comments.every((c) => c.get('post').get('title') === EXPECT.post.title) };
  });

  await step(report, 'likes', async () => {
    const users = await pointer('Post', EXPECT.likes.postId).relation('likes').query().limit(1000).find(M);
    return users.map((u) => u.id).sort();
  });

  await step(report, 'roles', async () => {
    const out = {};
    for (const [name, roleId] of Object.entries(EXPECT.roles)) {
      const role = await new Parse.Query(Parse.Role).get(roleId, M);
      const users = await role.getUsers().query().limit(1000).find(M);
      const children = await role.getRoles().query().find(M);
      out[name] = { name: role.getName(), users: users.map((u) => u.id).sort(), roles: children.map((r) => r.getName()).sort() };
    }
    return out;
  });

  // a private object (ACL: its author only): the author reads and writes it, another user does not see it
  await step(report, 'private_object', async () => ({
    owner: await access(EXPECT.private.owner, EXPECT.private.className, EXPECT.private.objectId),
    other: await access(EXPECT.private.other, EXPECT.private.className, EXPECT.private.objectId),
  }));

  // public read, write for role:Administrators and the author: an admin writes, a moderator only reads
  await step(report, 'admin_object', async () => ({
    admin: await access(EXPECT.adminObject.admin, EXPECT.adminObject.className, EXPECT.adminObject.objectId),
    moderator: await access(EXPECT.adminObject.moderator, EXPECT.adminObject.className, EXPECT.adminObject.objectId),
  }));

  // role inheritance: an object only role:Members may read; Administrators are in Moderators, Moderators in
  // Members, so an admin reads it through two levels, a user in no role does not
  await step(report, 'inherited_role', async () => {
    const obj = new Parse.Object('MembersOnly');
    const acl = new Parse.ACL();
    acl.setRoleReadAccess('Members', true);
    obj.setACL(acl);
    obj.set('note', 'members only');
    await obj.save(null, M);
    const admin = await access(EXPECT.inheritance.admin, 'MembersOnly', obj.id);
    const outsider = await access(EXPECT.inheritance.outsider, 'MembersOnly', obj.id);
    await obj.destroy(M);
    return { admin: admin.read, outsider: outsider.read };
  });

  await step(report, 'file', async () => {
    const post = await new Parse.Query('Post').get(EXPECT.file.postId, M);
    const file = post.get('image');
    const response = await fetch(file.url());
    const body = Buffer.from(await response.arrayBuffer());
    return { name: file.name(), status: response.status, sha256: crypto.createHash('sha256').update(body).digest('hex') };
  });

  // Files inside an array and an object keep the URL they were saved with (the SDK refuses a File without one)
  await step(report, 'nested_files', async () => {
    const [obj] = await new Parse.Query('Everything').equalTo('objectId', EXPECT.nested.objectId).find(M);
    const got = await new Parse.Query('Everything').get(EXPECT.nested.objectId, M);
    const pair = (file) => [file.name(), file.url()];
    return {
      gallery: obj.get('gallery').map(pair), cover: pair(obj.get('object').cover),
      sameOnGet: JSON.stringify(got.get('gallery').map(pair)) === JSON.stringify(obj.get('gallery').map(pair)),
    };
  });

  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + '\n');
  process.exit(1);
});
