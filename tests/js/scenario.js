#!/usr/bin/env node
// Parse JS SDK scenario runner for parsectl's end-to-end tests.
//
// Environment:
//   PARSE_SERVER_URL   e.g. http://127.0.0.1:1337/parse   (required)
//   PARSE_APP_ID       application id                     (default "test")
//   PARSE_MASTER_KEY   master key                         (default "test")
//   SCENARIOS          comma-separated scenario names; empty or "all" runs every scenario
//   SCENARIO_TAG       suffix for the class names this run creates (default: random), so that a run can be
//                      repeated against a server that already has data. The tag is removed from the output.
//   --list             print the scenario names as a JSON array and exit
//
// Output: exactly one JSON document on stdout:
//   {"sdkVersion": "...", "serverURL": "...", "scenarios": {"<name>": {"ok": true, "ms": 12, "result": ...}
//                                                        | {"ok": false, "ms": 12, "error": {...}}}}
// Results are normalized so they can be compared between two servers: objectIds are replaced by
// "<id:label>" for objects a scenario labelled (or "<id>" after a shape check), createdAt/updatedAt by
// "<ts>" after a shape check, session tokens by "<token>". Values that fail a shape check are kept
// visibly, e.g. "<bad-id:...>", so a comparison fails.
'use strict';

const Parse = require('parse/node');

const SERVER_URL = process.env.PARSE_SERVER_URL;
const APP_ID = process.env.PARSE_APP_ID || 'test';
const MASTER_KEY = process.env.PARSE_MASTER_KEY || 'test';
const TAG = process.env.SCENARIO_TAG || Math.random().toString(36).slice(2, 8);
const M = { useMasterKey: true };

// ---------------------------------------------------------------------------------------------
// normalization

const ID_RE = /^[A-Za-z0-9]{10}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const TOKEN_RE = /^r:[0-9a-f]{32}$/;
const labels = new Map(); // objectId -> label

function cls(base) {
  return `${base}_${TAG}`;
}

function stripTag(s) {
  return s.split(`_${TAG}`).join('');
}

function label(obj, name) {
  if (!obj || !obj.id) {
    throw new Error(`cannot label ${name}: object has no id`);
  }
  labels.set(obj.id, name);
  return obj;
}

function normId(v) {
  if (typeof v !== 'string') {
    return `<bad-id:${JSON.stringify(v)}>`;
  }
  if (v.startsWith('<')) {
    return v; // already normalized
  }
  if (labels.has(v)) {
    return `<id:${labels.get(v)}>`;
  }
  return ID_RE.test(v) ? '<id>' : `<bad-id:${v}>`;
}

function normTs(v) {
  if (v instanceof Date) {
    return '<ts>';
  }
  if (typeof v === 'string') {
    return ISO_RE.test(v) || v.startsWith('<') ? (v.startsWith('<') ? v : '<ts>') : `<bad-ts:${v}>`;
  }
  if (v && typeof v === 'object' && v.__type === 'Date' && ISO_RE.test(v.iso)) {
    return '<ts>';
  }
  return `<bad-ts:${JSON.stringify(v)}>`;
}

function norm(value) {
  if (value instanceof Parse.Object) {
    return norm({ className: value.className, ...value.toJSON() });
  }
  if (value instanceof Date) {
    return { __type: 'Date', iso: value.toISOString() };
  }
  if (value instanceof Parse.Error) {
    return { code: value.code, message: stripTag(String(value.message)) };
  }
  if (value && typeof value.toJSON === 'function' && !(value instanceof Array)) {
    return norm(value.toJSON());
  }
  if (Array.isArray(value)) {
    return value.map(norm);
  }
  if (value && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value).sort()) {
      const v = value[key];
      if (key === 'objectId') {
        out[key] = normId(v);
      } else if (key === 'createdAt' || key === 'updatedAt') {
        out[key] = normTs(v);
      } else if (key === 'sessionToken') {
        out[key] = TOKEN_RE.test(v) ? '<token>' : String(v).startsWith('<') ? v : `<bad-token:${v}>`;
      } else {
        out[stripTag(key)] = norm(v);
      }
    }
    return out;
  }
  if (typeof value === 'string') {
    return stripTag(value);
  }
  if (value === undefined) {
    return null;
  }
  return value;
}

function errorOf(e) {
  if (e instanceof Parse.Error || (e && typeof e.code === 'number')) {
    const out = { code: e.code, message: stripTag(String(e.message)) };
    if (Array.isArray(e.errors)) {
      // Parse.Error.AGGREGATE_ERROR (600) from saveAll/destroyAll carries one error per failed object.
      out.errors = e.errors.map((x) => ({ code: x.code, message: stripTag(String(x.message)) }));
    }
    return out;
  }
  return { code: null, message: String((e && e.stack) || e) };
}

// Run fn and return its normalized value, or {error: {code, message}}.
async function attempt(fn) {
  try {
    return { value: norm(await fn()) };
  } catch (e) {
    return { error: errorOf(e) };
  }
}

function names(objects) {
  return objects.map((o) => o.get('name'));
}

// The SDK's own view of a value's type (after decoding a server answer).
function sdkType(v) {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (v instanceof Date) return 'Date';
  if (v instanceof Parse.GeoPoint) return 'GeoPoint';
  if (v instanceof Parse.Polygon) return 'Polygon';
  if (v instanceof Parse.Relation) return 'Relation';
  if (v instanceof Parse.File) return 'File';
  if (v instanceof Parse.Object) return `Object<${stripTag(v.className)}>`;
  if (Array.isArray(v)) return `Array[${v.map(sdkType).join(',')}]`;
  return typeof v;
}

// ---------------------------------------------------------------------------------------------
// scenarios

const scenarios = {};

// Saving and fetching every value type.
scenarios.types_roundtrip = async () => {
  const Target = cls('TypeTarget');
  const Types = cls('Types');
  const [t1, t2] = await Parse.Object.saveAll(
    [new Parse.Object(Target, { name: 't1' }), new Parse.Object(Target, { name: 't2' })],
    M
  );
  label(t1, 't1');
  label(t2, 't2');

  const publicRead = new Parse.ACL();
  publicRead.setPublicReadAccess(true);
  const full = new Parse.Object(Types);
  full.set({
    name: 'full',
    str: 'héllo wörld ✓',
    num: 42.5,
    int: 7,
    neg: -3,
    zero: 0,
    big: 9007199254740991,
    yes: true,
    no: false,
    date: new Date('2020-01-02T03:04:05.678Z'),
    obj: { a: 1, s: 'x', nested: { when: new Date('2021-05-06T07:08:09.010Z'), list: [1, 'two', false] } },
    arr: [1, 'a', true, { k: 'v' }, [2, 3]],
    emptyArr: [],
    emptyObj: {},
    ptr: t1,
    ptrs: [t1, t2],
    geo: new Parse.GeoPoint(40.5, -30.25),
    poly: new Parse.Polygon([
      [0, 0],
      [0, 1],
      [1, 1],
      [1, 0],
      [0, 0],
    ]),
    bytes: { __type: 'Bytes', base64: 'aGVsbG8gd29ybGQ=' },
  });
  full.setACL(publicRead);
  await full.save(null, M);
  label(full, 'full');

  // A second object, saved after the schema has every field, with some of them null.
  const sparse = new Parse.Object(Types);
  sparse.set({ name: 'sparse', str: null, num: null, ptr: null, date: null });
  await sparse.save(null, M);
  label(sparse, 'sparse');

  const out = {};
  // Fetch without the master key: the ACL allows public reads.
  const fetched = await new Parse.Query(Types).get(full.id);
  out.fetched = norm(fetched);
  out.sdkTypes = {};
  for (const key of Object.keys(fetched.attributes).sort()) {
    if (key !== 'createdAt' && key !== 'updatedAt') {
      out.sdkTypes[key] = sdkType(fetched.get(key));
    }
  }
  out.timestampsAreDates = fetched.createdAt instanceof Date && fetched.updatedAt instanceof Date;
  out.ptrIsT1 = fetched.get('ptr').id === t1.id;
  out.nestedDateIsDate = fetched.get('obj').nested.when instanceof Date;
  out.fetchedSparse = norm(await new Parse.Query(Types).get(sparse.id));

  // Public read only: a write without the master key is refused as if the object did not exist.
  const other = Parse.Object.extend(Types).createWithoutData(full.id);
  other.set('str', 'changed');
  out.writeWithoutMaster = await attempt(() => other.save());

  // Unset with the master key.
  fetched.unset('str');
  fetched.unset('neg');
  await fetched.save(null, M);
  const afterUnset = await new Parse.Query(Types).get(full.id);
  out.afterUnsetHas = { str: afterUnset.has('str'), neg: afterUnset.has('neg'), num: afterUnset.has('num') };
  out.afterUnsetKeys = Object.keys(afterUnset.toJSON()).sort();

  // A private object: no public read.
  const secret = new Parse.Object(Types, { name: 'secret', str: 's' });
  secret.setACL(new Parse.ACL());
  await secret.save(null, M);
  label(secret, 'secret');
  out.privateGetNoMaster = await attempt(() => new Parse.Query(Types).get(secret.id));
  out.privateGetMaster = await attempt(async () => (await new Parse.Query(Types).get(secret.id, M)).get('name'));
  out.privateFindNoMaster = names(await new Parse.Query(Types).ascending('name').find());
  out.privateFindMaster = names(await new Parse.Query(Types).ascending('name').find(M));
  out.privateAcl = norm((await new Parse.Query(Types).get(secret.id, M)).getACL());
  return out;
};

// Parse.Object.saveAll / destroyAll (both go through /batch).
scenarios.save_all_destroy_all = async () => {
  const Batch = cls('BatchItem');
  const items = ['a', 'b', 'c', 'd'].map((name, i) => new Parse.Object(Batch, { name, n: i }));
  const saved = await Parse.Object.saveAll(items, M);
  saved.forEach((o) => label(o, o.get('name')));
  const out = {};
  out.allHaveIds = saved.every((o) => ID_RE.test(o.id));
  out.distinctIds = new Set(saved.map((o) => o.id)).size;
  out.afterSave = names(await new Parse.Query(Batch).ascending('name').find());

  // Updates in a batch, without the master key (the class exists now).
  saved[0].set('n', 100);
  saved[1].increment('n', 10);
  await Parse.Object.saveAll([saved[0], saved[1]]);
  out.afterUpdate = (await new Parse.Query(Batch).ascending('name').find()).map((o) => [o.get('name'), o.get('n')]);

  // A batch with one bad object: the good one is still saved, the error is reported.
  const good = new Parse.Object(Batch, { name: 'e', n: 5 });
  const bad = new Parse.Object(Batch, { name: 'f', n: 'not a number' });
  out.mixedBatch = await attempt(() => Parse.Object.saveAll([good, bad]));
  out.afterMixed = names(await new Parse.Query(Batch).ascending('name').find());

  await Parse.Object.destroyAll([saved[1], saved[2]]);
  out.afterDestroy = names(await new Parse.Query(Batch).ascending('name').find());
  out.getDestroyed = await attempt(() => new Parse.Query(Batch).get(saved[1].id));
  out.destroyAgain = await attempt(() => Parse.Object.destroyAll([saved[1]]));
  return out;
};

// Saving an object whose pointers are still unsaved: the SDK saves the children first via /batch.
scenarios.unsaved_children = async () => {
  const Parent = cls('Parent');
  const Child = cls('Child');
  // The classes must exist before a client without the master key can create objects in them.
  await new Parse.Object(Child, { name: 'seed' }).save(null, M);
  await new Parse.Object(Parent, { name: 'seed' }).save(null, M);

  const parent = new Parse.Object(Parent, { name: 'p' });
  const kid = new Parse.Object(Child, { name: 'kid' });
  const twins = [new Parse.Object(Child, { name: 'twin1' }), new Parse.Object(Child, { name: 'twin2' })];
  parent.set('child', kid);
  parent.set('kids', twins);
  parent.set('meta', { favourite: twins[1] });
  await parent.save();
  label(parent, 'p');
  label(kid, 'kid');
  twins.forEach((t) => label(t, t.get('name')));

  const out = {};
  out.childrenSaved = [kid, ...twins].map((c) => ID_RE.test(c.id || ''));
  const fetched = await new Parse.Query(Parent).include(['child', 'kids']).get(parent.id);
  out.fetched = norm(fetched);
  out.childName = fetched.get('child').get('name');
  out.kidNames = fetched.get('kids').map((k) => k.get('name'));
  out.childCount = await new Parse.Query(Child).startsWith('name', 't').count();
  return out;
};

async function seedQueryData(prefix) {
  const Owner = cls(`${prefix}Owner`);
  const Team = cls(`${prefix}Team`);
  const Item = cls(`${prefix}Item`);
  const [red, blue] = await Parse.Object.saveAll(
    [new Parse.Object(Team, { name: 'red', rank: 1 }), new Parse.Object(Team, { name: 'blue', rank: 2 })],
    M
  );
  label(red, 'red');
  label(blue, 'blue');
  const owners = await Parse.Object.saveAll(
    [
      new Parse.Object(Owner, { name: 'ann', age: 30, team: red, num: 1 }),
      new Parse.Object(Owner, { name: 'bob', age: 40, team: blue, num: 3 }),
      new Parse.Object(Owner, { name: 'cat', age: 50, team: red, num: 5 }),
    ],
    M
  );
  owners.forEach((o) => label(o, o.get('name')));
  const [ann, bob, cat] = owners;
  const d = (s) => new Date(`2024-01-${s}T12:00:00.000Z`);
  const rows = [
    { name: 'a', n: 1, grp: 'x', title: 'Apple pie', tags: ['x', 'y'], when: d('01'), owner: ann, flag: true, opt: 1 },
    { name: 'b', n: 2, grp: 'x', title: 'apple tart', tags: ['x'], when: d('02'), owner: bob, flag: false },
    { name: 'c', n: 3, grp: 'y', title: 'Banana split', tags: ['y', 'z'], when: d('03'), owner: cat, flag: true, opt: 3 },
    { name: 'd', n: 4, grp: 'y', title: 'Cherry (pie)', tags: [], when: d('04'), owner: ann, flag: false },
    { name: 'e', n: 5, grp: 'x', title: 'banana bread', tags: ['x', 'y', 'z'], when: d('05'), owner: bob, flag: true, opt: 5 },
    { name: 'f', n: 6, grp: 'z', title: 'Pie.crust*', tags: ['w'], when: d('06'), flag: false },
    { name: 'g', n: 7, grp: 'z', title: 'grape', tags: ['z'], when: d('07'), owner: cat, flag: true },
    { name: 'h', n: 8, grp: 'y', title: 'Honeydew', tags: ['y'], when: d('08'), owner: ann, flag: false, opt: 8 },
  ];
  const items = await Parse.Object.saveAll(
    rows.map((r) => {
      const o = new Parse.Object(Item, r);
      o.set('owners', r.owner ? [r.owner, ann] : []);
      return o;
    }),
    M
  );
  items.forEach((o) => label(o, o.get('name')));
  return { Owner, Team, Item, red, blue, ann, bob, cat, items, d };
}

// Query constraints, one result list (item names) per query.
scenarios.queries = async () => {
  const { Owner, Team, Item, ann, bob, red, d } = await seedQueryData('Q');
  const Q = () => new Parse.Query(Item).ascending('name');
  const ownersQ = () => new Parse.Query(Owner);
  const queries = {
    equalTo: Q().equalTo('n', 3),
    equalToString: Q().equalTo('grp', 'y'),
    equalToBool: Q().equalTo('flag', true),
    notEqualTo: Q().notEqualTo('n', 3),
    notEqualToString: Q().notEqualTo('grp', 'x'),
    lessThan: Q().lessThan('n', 3),
    lessThanOrEqualTo: Q().lessThanOrEqualTo('n', 3),
    greaterThan: Q().greaterThan('n', 6),
    greaterThanOrEqualTo: Q().greaterThanOrEqualTo('n', 6),
    range: Q().greaterThan('n', 2).lessThanOrEqualTo('n', 5),
    containedIn: Q().containedIn('n', [1, 3, 5, 99]),
    containedInString: Q().containedIn('grp', ['x', 'z']),
    notContainedIn: Q().notContainedIn('n', [1, 3, 5]),
    containsAll: Q().containsAll('tags', ['x', 'y']),
    containsAllSingle: Q().containsAll('tags', ['z']),
    containedBy: Q().containedBy('tags', ['x', 'y']),
    exists: Q().exists('opt'),
    doesNotExist: Q().doesNotExist('opt'),
    existsPointer: Q().exists('owner'),
    doesNotExistPointer: Q().doesNotExist('owner'),
    matchesRegex: Q().matches('title', /^apple/),
    matchesRegexI: Q().matches('title', /^apple/i),
    matchesString: Q().matches('title', 'PIE$', 'i'),
    matchesDot: Q().matches('title', 'an.n'),
    startsWith: Q().startsWith('title', 'Apple'),
    startsWithSpecial: Q().startsWith('title', 'Pie.'),
    endsWith: Q().endsWith('title', 'pie'),
    endsWithParen: Q().endsWith('title', '(pie)'),
    contains: Q().contains('title', 'an'),
    containsSpecial: Q().contains('title', '.crust*'),
    or: Parse.Query.or(new Parse.Query(Item).equalTo('n', 1), new Parse.Query(Item).greaterThan('n', 6)).ascending('name'),
    and: Parse.Query.and(new Parse.Query(Item).greaterThan('n', 2), new Parse.Query(Item).equalTo('grp', 'y')).ascending('name'),
    nor: Parse.Query.nor(new Parse.Query(Item).equalTo('grp', 'x'), new Parse.Query(Item).equalTo('n', 8)).ascending('name'),
    orOfAnd: Parse.Query.or(
      Parse.Query.and(new Parse.Query(Item).equalTo('grp', 'x'), new Parse.Query(Item).equalTo('flag', true)),
      new Parse.Query(Item).equalTo('name', 'g')
    ).ascending('name'),
    matchesKeyInQuery: Q().matchesKeyInQuery('n', 'num', ownersQ()),
    matchesKeyInQueryFiltered: Q().matchesKeyInQuery('n', 'num', ownersQ().greaterThan('age', 35)),
    doesNotMatchKeyInQuery: Q().doesNotMatchKeyInQuery('n', 'num', ownersQ()),
    matchesQuery: Q().matchesQuery('owner', ownersQ().greaterThan('age', 35)),
    matchesQueryNested: Q().matchesQuery('owner', ownersQ().matchesQuery('team', new Parse.Query(Team).equalTo('name', 'red'))),
    doesNotMatchQuery: Q().exists('owner').doesNotMatchQuery('owner', ownersQ().greaterThan('age', 35)),
    // Item f has no owner: PostgreSQL's NOT IN leaves it out (MongoDB's $nin would keep it).
    doesNotMatchQueryMissing: Q().doesNotMatchQuery('owner', ownersQ().greaterThan('age', 35)),
    dateGreaterThan: Q().greaterThan('when', d('05')),
    dateLessThanOrEqualTo: Q().lessThanOrEqualTo('when', d('02')),
    dateEqualTo: Q().equalTo('when', d('03')),
    pointerEqualTo: Q().equalTo('owner', ann),
    pointerNotEqualTo: Q().notEqualTo('owner', ann),
    pointerContainedIn: Q().containedIn('owner', [ann, bob]),
    pointerArrayContainsAll: Q().containsAll('owners', [bob]),
    orderDescending: new Parse.Query(Item).descending('n'),
    orderMultiKey: new Parse.Query(Item).ascending('grp').addDescending('n'),
    orderMultiKeyString: new Parse.Query(Item).descending('grp').addAscending('title'),
    orderDate: new Parse.Query(Item).descending('when'),
    limit: new Parse.Query(Item).ascending('n').limit(3),
    skip: new Parse.Query(Item).ascending('n').skip(5),
    limitSkip: new Parse.Query(Item).ascending('n').skip(2).limit(3),
    limitZeroish: new Parse.Query(Item).ascending('n').skip(100),
  };
  const out = {};
  for (const [qname, q] of Object.entries(queries)) {
    const r = await attempt(async () => names(await q.find()));
    out[qname] = r.error ? { error: r.error } : r.value;
  }
  void red;
  return out;
};

// select/exclude/include/count/first/get/each/findAll/withCount.
scenarios.query_features = async () => {
  const { Item, ann, items } = await seedQueryData('F');
  const byName = Object.fromEntries(items.map((o) => [o.get('name'), o]));
  const out = {};
  const keysOf = (o) => Object.keys(o.toJSON()).sort();

  const selected = await new Parse.Query(Item).select('name', 'n').ascending('n').limit(2).find();
  out.selectKeys = selected.map(keysOf);
  out.selectValues = selected.map(norm);
  const excluded = await new Parse.Query(Item).exclude('tags', 'title', 'owners').equalTo('name', 'a').find();
  out.excludeKeys = excluded.map(keysOf);

  const inc = await new Parse.Query(Item).include('owner').equalTo('name', 'a').first();
  out.includeOwner = norm(inc.get('owner'));
  const incDotted = await new Parse.Query(Item).include('owner.team').equalTo('name', 'a').first();
  out.includeDotted = norm(incDotted.get('owner'));
  out.includeDottedTeamName = incDotted.get('owner').get('team').get('name');
  const incArray = await new Parse.Query(Item).include('owners').equalTo('name', 'b').first();
  out.includeArray = incArray.get('owners').map((o) => [o.get('name'), o.get('age')]);
  const noInclude = await new Parse.Query(Item).equalTo('name', 'a').first();
  out.noInclude = norm(noInclude.get('owner'));
  const incAll = await new Parse.Query(Item).includeAll().equalTo('name', 'c').first();
  out.includeAll = { owner: incAll.get('owner').get('name'), owners: incAll.get('owners').map((o) => o.get('name')) };
  const incMissing = await new Parse.Query(Item).include('owner').equalTo('name', 'f').first();
  out.includeMissingPointer = incMissing.has('owner');

  out.countAll = await new Parse.Query(Item).exists('name').count();
  out.countWhere = await new Parse.Query(Item).equalTo('flag', true).count();
  out.countWithLimit = await new Parse.Query(Item).exists('name').limit(2).count();
  out.countNone = await new Parse.Query(Item).equalTo('n', 999).count();
  out.countPointer = await new Parse.Query(Item).equalTo('owner', ann).count();

  out.first = (await new Parse.Query(Item).descending('n').first()).get('name');
  out.firstNone = norm(await new Parse.Query(Item).equalTo('n', 999).first());
  const got = await new Parse.Query(Item).get(byName.c.id);
  out.get = norm(got);
  out.getMissing = await attempt(() => new Parse.Query(Item).get('doesNotExi'));
  out.getWithSelect = keysOf(await new Parse.Query(Item).select('title').get(byName.d.id));

  const seen = [];
  await new Parse.Query(Item).greaterThan('n', 1).each((o) => seen.push(o.get('name')), { batchSize: 3 });
  out.each = seen.sort();
  out.eachCount = seen.length;
  const all = await new Parse.Query(Item).findAll({ batchSize: 2 });
  out.findAll = names(all).sort();
  const batches = [];
  await new Parse.Query(Item).eachBatch((b) => batches.push(b.length), { batchSize: 3 });
  out.eachBatchSizes = batches;

  const wc = await new Parse.Query(Item).equalTo('grp', 'x').ascending('name').limit(2).withCount().find();
  out.withCount = { count: wc.count, results: names(wc.results) };
  const distinctish = await new Parse.Query(Item).ascending('name').find();
  out.pointerFieldTypes = distinctish.map((o) => sdkType(o.get('owner')));
  return out;
};

// Relations: add/remove, relation.query() ($relatedTo), equalTo on a relation field.
scenarios.relations = async () => {
  const Group = cls('RGroup');
  const Member = cls('RMember');
  const members = await Parse.Object.saveAll(
    ['m1', 'm2', 'm3', 'm4'].map((name) => new Parse.Object(Member, { name })),
    M
  );
  members.forEach((m) => label(m, m.get('name')));
  const [m1, m2, m3, m4] = members;
  const g1 = new Parse.Object(Group, { name: 'g1' });
  const g2 = new Parse.Object(Group, { name: 'g2' });
  g1.relation('members').add([m1, m2, m3]);
  g2.relation('members').add(m3);
  await Parse.Object.saveAll([g1, g2], M);
  label(g1, 'g1');
  label(g2, 'g2');

  const out = {};
  out.relationQuery = names(await g1.relation('members').query().ascending('name').find());
  g1.relation('members').remove(m2);
  g1.relation('members').add(m4);
  await g1.save();
  out.afterRemove = names(await g1.relation('members').query().ascending('name').find());
  out.relationQueryFiltered = names(
    await g1.relation('members').query().notEqualTo('name', 'm1').ascending('name').find()
  );
  out.relationCount = await g1.relation('members').query().count();
  out.groupsWithM3 = names(await new Parse.Query(Group).equalTo('members', m3).ascending('name').find());
  out.groupsWithM2 = names(await new Parse.Query(Group).equalTo('members', m2).ascending('name').find());
  out.groupsWithM1orM3 = names(await new Parse.Query(Group).containedIn('members', [m1, m3]).ascending('name').find());
  out.groupsMatchingMembers = names(
    await new Parse.Query(Group)
      .matchesQuery('members', new Parse.Query(Member).equalTo('name', 'm4'))
      .ascending('name')
      .find()
  );
  const fetched = await new Parse.Query(Group).get(g1.id);
  out.fetched = norm(fetched);
  out.relationType = sdkType(fetched.get('members'));
  out.g2Members = names(await g2.relation('members').query().find());
  out.relationOnUnknownField = await attempt(async () => names(await g2.relation('other').query().find()));
  return out;
};

// 50 concurrent increments of the same object, from 50 separate SDK instances.
scenarios.increment_concurrency = async () => {
  const Counter = cls('Counter');
  const counter = await new Parse.Object(Counter, { name: 'c', n: 0, m: 100 }).save(null, M);
  label(counter, 'c');
  const N = 50;
  const returned = await Promise.all(
    Array.from({ length: N }, async () => {
      const o = Parse.Object.extend(Counter).createWithoutData(counter.id);
      o.increment('n');
      o.increment('m', -2);
      await o.save();
      return [o.get('n'), o.get('m')];
    })
  );
  const fetched = await new Parse.Query(Counter).get(counter.id);
  const out = {};
  out.final = { n: fetched.get('n'), m: fetched.get('m') };
  out.returnedN = returned.map((r) => r[0]).sort((a, b) => a - b);
  out.returnedM = returned.map((r) => r[1]).sort((a, b) => a - b);
  // Increment of a field that does not exist yet starts from the amount.
  const fresh = await new Parse.Object(Counter, { name: 'fresh' }).save(null, M);
  label(fresh, 'fresh');
  fresh.increment('n', 5);
  await fresh.save();
  out.incrementMissing = (await new Parse.Query(Counter).get(fresh.id)).get('n');
  // Increment on create.
  const created = new Parse.Object(Counter, { name: 'created' });
  created.increment('n', 3);
  await created.save();
  out.incrementOnCreate = (await new Parse.Query(Counter).get(created.id)).get('n');
  return out;
};

// Updating fields of every (updatable) type, and the array operators.
scenarios.updates = async () => {
  const Upd = cls('Upd');
  const Target = cls('UpdTarget');
  const [x, y] = await Parse.Object.saveAll(
    [new Parse.Object(Target, { name: 'x' }), new Parse.Object(Target, { name: 'y' })],
    M
  );
  label(x, 'x');
  label(y, 'y');
  const o = new Parse.Object(Upd, {
    name: 'u',
    n: 1,
    s: 'a',
    flag: false,
    arr: [1, 2],
    obj: { a: 1 },
    when: new Date('2020-01-01T00:00:00.000Z'),
    geo: new Parse.GeoPoint(1, 2),
    ptr: x,
    gone: 'soon',
  });
  await o.save(null, M);
  label(o, 'u');
  const out = {};
  o.set({
    n: 2.5,
    s: 'b',
    flag: true,
    arr: [3],
    obj: { b: { c: 2 }, d: [new Date('2022-02-02T02:02:02.002Z')] },
    when: new Date('2023-03-03T03:03:03.003Z'),
    geo: new Parse.GeoPoint(-10.5, 170.25),
    ptr: y,
    added: 'new field',
  });
  o.unset('gone');
  await o.save();
  out.afterSet = norm(await new Parse.Query(Upd).get(o.id));

  const sortedArr = async () => ((await new Parse.Query(Upd).get(o.id)).get('arr') || []).slice().sort();
  o.add('arr', 4);
  await o.save();
  out.afterAdd = await sortedArr();
  o.addUnique('arr', 3);
  await o.save();
  out.afterAddUniqueExisting = await sortedArr();
  o.addAllUnique('arr', [5, 4, 6]);
  await o.save();
  out.afterAddAllUnique = await sortedArr();
  o.remove('arr', 4);
  await o.save();
  out.afterRemove = await sortedArr();
  o.addAll('arr', [7, 7]);
  await o.save();
  out.afterAddAllDuplicates = await sortedArr();
  o.removeAll('arr', [7, 99]);
  await o.save();
  out.afterRemoveAll = await sortedArr();

  const fresh = Parse.Object.extend(Upd).createWithoutData(o.id);
  fresh.set('n', 'not a number');
  out.wrongType = await attempt(() => fresh.save());
  const fresh2 = Parse.Object.extend(Upd).createWithoutData(o.id);
  fresh2.set('ptr', new Parse.Object(Target, { name: 'unsaved-but-saved-first' }));
  fresh2.increment('n', 0.5);
  await fresh2.save();
  const after = await new Parse.Query(Upd).include('ptr').get(o.id);
  out.ptrAfterChildSave = after.get('ptr').get('name');
  out.nAfterIncrement = after.get('n');
  return out;
};

// Errors reported through the SDK.
scenarios.sdk_errors = async () => {
  const Known = cls('ErrKnown');
  await new Parse.Object(Known, { name: 'k', n: 1 }).save(null, M);
  const out = {};
  out.newClassWithoutMaster = await attempt(() => new Parse.Object(cls('ErrNew'), { a: 1 }).save());
  out.findUnknownClassWithoutMaster = await attempt(() => new Parse.Query(cls('ErrNope')).find());
  out.findUnknownClassWithMaster = await attempt(async () => (await new Parse.Query(cls('ErrNope')).find(M)).length);
  out.schemaMismatch = await attempt(() => new Parse.Object(Known, { n: 'x' }).save());
  out.getMissing = await attempt(() => new Parse.Query(Known).get('abcdefghij'));
  out.destroyMissing = await attempt(() => Parse.Object.extend(Known).createWithoutData('abcdefghij').destroy());
  return out;
};

// ---------------------------------------------------------------------------------------------

async function main() {
  if (process.argv.includes('--list')) {
    process.stdout.write(`${JSON.stringify(Object.keys(scenarios))}\n`);
    return;
  }
  if (!SERVER_URL) {
    throw new Error('PARSE_SERVER_URL is required');
  }
  Parse.initialize(APP_ID);
  Parse.masterKey = MASTER_KEY;
  Parse.serverURL = SERVER_URL;
  // A 5xx answer must show up as a failure at once, not after the SDK's retries with back-off.
  Parse.CoreManager.set('REQUEST_ATTEMPT_LIMIT', 1);

  const wanted = (process.env.SCENARIOS || '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s && s !== 'all');
  for (const name of wanted) {
    if (!scenarios[name]) {
      throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`);
    }
  }
  const selected = wanted.length ? wanted : Object.keys(scenarios);
  const report = { sdkVersion: Parse.CoreManager.get('VERSION'), serverURL: SERVER_URL, scenarios: {} };
  for (const name of selected) {
    const started = Date.now();
    try {
      const result = await scenarios[name]();
      report.scenarios[name] = { ok: true, ms: Date.now() - started, result: norm(result) };
    } catch (e) {
      report.scenarios[name] = { ok: false, ms: Date.now() - started, error: errorOf(e) };
    }
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`scenario runner failed: ${(err && err.stack) || err}\n`);
    process.exit(2);
  }
);
