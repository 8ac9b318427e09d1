#!/usr/bin/env node
// Geo and full-text queries through the official Parse JS SDK: near, withinKilometers/Miles/Radians,
// withinGeoBox, withinPolygon, polygonContains, fullText and sortByTextScore.
//
// Environment: PARSE_SERVER_URL (required), PARSE_APP_ID (default "test"), PARSE_MASTER_KEY (default "test"),
// SCENARIO_TAG (suffix for class names; default random).
// Output: one JSON document on stdout, {"sdkVersion", "scenarios": {name: {"ok", "result" | "error"}}};
// results are lists of object names (or {code, message} for errors), so servers compare as they are.
'use strict';

const Parse = require('parse/node');

const SERVER_URL = process.env.PARSE_SERVER_URL;
const APP_ID = process.env.PARSE_APP_ID || 'test';
const MASTER_KEY = process.env.PARSE_MASTER_KEY || 'test';
const TAG = process.env.SCENARIO_TAG || Math.random().toString(36).slice(2, 8);
const PLACE = `Place${TAG}`;
const AREA = `Area${TAG}`;

const PLACES = [
  ['SF', 37.7749, -122.4194, 'Fog, cable cars and great coffee shops'],
  ['Oakland', 37.8044, -122.2712, 'Coffee roasters by the lake'],
  ['SanJose', 37.3382, -121.8863, 'Silicon valley startups'],
  ['Sacramento', 38.5816, -121.4944, 'The state capital, farm to fork'],
  ['LA', 34.0522, -118.2437, 'Movies, beaches and a café culture'],
  ['NYC', 40.7128, -74.006, 'coffee, coffee and more coffee'],
];
const SF = new Parse.GeoPoint(37.7749, -122.4194);

function errorOf(e) {
  if (e && typeof e.code === 'number') return { code: e.code, message: String(e.message) };
  return { code: null, message: String((e && e.stack) || e) };
}

async function attempt(fn) {
  try {
    return await fn();
  } catch (e) {
    return { error: errorOf(e) };
  }
}

const names = (objs) => objs.map((o) => o.get('name'));
const place = () => new Parse.Query(PLACE);

async function seed() {
  const objs = PLACES.map(([name, lat, lng, text]) => {
    const o = new Parse.Object(PLACE);
    o.set({ name, location: new Parse.GeoPoint(lat, lng), text });
    return o;
  });
  await Parse.Object.saveAll(objs, { useMasterKey: true });
  const ring = (lat, lng) => [[lat - 0.2, lng - 0.2], [lat - 0.2, lng + 0.2], [lat + 0.2, lng + 0.2], [lat + 0.2, lng - 0.2]];
  const areas = PLACES.slice(0, 3).map(([name, lat, lng]) => {
    const o = new Parse.Object(AREA);
    o.set({ name, bounds: new Parse.Polygon(ring(lat, lng)) });
    return o;
  });
  await Parse.Object.saveAll(areas, { useMasterKey: true });
}

const scenarios = {};

scenarios.near = async () => ({
  near: names(await place().near('location', SF).limit(4).find()),
  nearSkip: names(await place().near('location', SF).skip(1).limit(2).find()),
  nearCount: await place().near('location', SF).count(),
  nearOrdered: names(await place().near('location', SF).ascending('name').limit(3).find()),
});

scenarios.within_distance = async () => ({
  km: names(await place().withinKilometers('location', SF, 100).find()),
  kmUnsorted: names(await place().withinKilometers('location', SF, 100, false).ascending('name').find()),
  miles: names(await place().withinMiles('location', SF, 100).find()),
  radians: names(await place().withinRadians('location', SF, 0.01).find()),
  kmCount: await place().withinKilometers('location', SF, 100).count(),
});

scenarios.box_polygon = async () => ({
  box: names(await place().withinGeoBox('location', new Parse.GeoPoint(33, -123), new Parse.GeoPoint(39, -118))
    .ascending('name').find()),
  polygon: names(await place().withinPolygon('location', [
    new Parse.GeoPoint(37, -123), new Parse.GeoPoint(37, -121.5), new Parse.GeoPoint(38, -121.5),
    new Parse.GeoPoint(38, -123)]).ascending('name').find()),
  polygonContains: names(await new Parse.Query(AREA).polygonContains('bounds', new Parse.GeoPoint(37.9, -122.35))
    .ascending('name').find()),
  polygonContainsNone: names(await new Parse.Query(AREA).polygonContains('bounds', new Parse.GeoPoint(0, 0)).find()),
  tooFewPoints: await attempt(() => place().withinPolygon('location', [SF, SF]).find()),
});

scenarios.full_text = async () => {
  const byScore = await place().fullText('text', 'coffee').sortByTextScore().find();
  return {
    coffee: names(await place().fullText('text', 'coffee').ascending('name').find()),
    stem: names(await place().fullText('text', 'shop').find()),
    phrase: names(await place().fullText('text', '"coffee shops"').find()),
    diacritics: names(await place().fullText('text', 'cafe').find()),
    diacriticSensitive: names(await place().fullText('text', 'cafe', { diacriticSensitive: true }).find()),
    caseSensitive: names(await place().fullText('text', 'Coffee', { caseSensitive: true }).find()),
    language: names(await place().fullText('text', 'coffee', { language: 'en' }).ascending('name').find()),
    count: await place().fullText('text', 'coffee').count(),
    byScoreFirst: byScore.length ? byScore[0].id === (await place().equalTo('name', 'NYC').first()).id : null,
    scoresDescending: byScore.map((o) => o.get('score')).every((s, i, all) => typeof s === 'number' && (i === 0 || all[i - 1] >= s)),
    byScoreCount: byScore.length,
  };
};

async function main() {
  if (!SERVER_URL) throw new Error('PARSE_SERVER_URL is required');
  Parse.initialize(APP_ID);
  Parse.masterKey = MASTER_KEY;
  Parse.serverURL = SERVER_URL;
  Parse.CoreManager.set('REQUEST_ATTEMPT_LIMIT', 1);
  await seed();
  const report = { sdkVersion: Parse.CoreManager.get('VERSION'), scenarios: {} };
  for (const name of Object.keys(scenarios)) {
    try {
      report.scenarios[name] = { ok: true, result: await scenarios[name]() };
    } catch (e) {
      report.scenarios[name] = { ok: false, error: errorOf(e) };
    }
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`geo.js failed: ${(err && err.stack) || err}\n`);
    process.exit(2);
  }
);
