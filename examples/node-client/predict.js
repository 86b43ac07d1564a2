#!/usr/bin/env node
// Predict with an mlpack model's .onnx from Node.js, using nothing of mlpack: only onnxruntime-node
// and the rules in the README ("Feeding the graph from another language"). Documents are JSON or
// MongoDB Extended JSON (what mongoexport writes), one per line; the answers are JSON lines in order:
//   {"prediction": <label or value>, "probabilities": [<one per class, in metadata.classes order>]}
//
//   npm ci --ignore-scripts          # once, in this folder
//   node predict.js model.onnx documents.jsonl [--metadata metadata.json] > predictions.jsonl
//
// A bad document stops the run with one line on stderr naming its line and field (exit status 1).
'use strict';

const fs = require('node:fs');
const readline = require('node:readline');
const ort = require('onnxruntime-node');

const CONTRACT_VERSION = 1; // metadata.inputs_contract.version this client implements
const MISSING_CATEGORY = '__missing__';
const MISSING_DATE = -(2n ** 63n);
const FLOAT32_MAX = 3.4028234663852886e38;
const BATCH = 1000;
const ABSENT = undefined; // a field the document does not have

// -- the metadata: JSON in the .onnx's metadata_props under "mlpack.metadata" ----------------------
// onnxruntime-node does not expose metadata_props, so the ModelProto's top-level fields are walked
// here (protobuf: field 14 = metadata_props, each an entry with key = 1 and value = 2).
function protobufFields(bytes, start, end, visit) {
  let pos = start;
  const varint = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (pos >= end) throw new Error('not an ONNX file (its protobuf data is cut short)');
      const byte = bytes[pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  };
  while (pos < end) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const length = varint();
      if (pos + length > end) throw new Error('not an ONNX file (its protobuf data is cut short)');
      visit(field, pos, pos + length);
      pos += length;
    } else throw new Error('not an ONNX file (unexpected protobuf data)');
  }
}

function onnxMetadata(bytes) {
  let found = null;
  protobufFields(bytes, 0, bytes.length, (field, start, end) => {
    if (field !== 14) return;
    const entry = {};
    protobufFields(bytes, start, end, (part, s, e) => {
      entry[part] = bytes.subarray(s, e).toString('utf8');
    });
    if (entry[1] === 'mlpack.metadata') found = entry[2];
  });
  if (found === null) throw new Error('this ONNX file has no mlpack metadata (was it built by mlpack?)');
  return JSON.parse(found);
}

// -- reading a field ---------------------------------------------------------------------------
const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

// A dotted key as it is given ("billing.spend": 5), else the nested fields; a parent that is null
// or not an object has no fields.
function lookup(document, path) {
  if (Object.prototype.hasOwnProperty.call(document, path)) return document[path];
  let node = document;
  for (const part of path.split('.')) {
    if (!isObject(node) || !Object.prototype.hasOwnProperty.call(node, part)) return ABSENT;
    node = node[part];
  }
  return node;
}

// Extended JSON numbers: {"$numberDouble": "3.0"}, {"$numberDecimal": "3.00"}, {"$numberInt": "3"},
// {"$numberLong": "3"}. Returns the wrapper's key and text, or null for anything else.
function wrappedNumber(value) {
  if (!isObject(value)) return null;
  const keys = Object.keys(value);
  const key = keys[0];
  if (keys.length !== 1 || !['$numberDouble', '$numberDecimal', '$numberInt', '$numberLong'].includes(key)) return null;
  return typeof value[key] === 'string' ? { key, text: value[key] } : null;
}

// The number an Extended JSON wrapper holds ("NaN", "Infinity" and "1E+3" included).
function wrappedValue(wrapped) {
  const number = Number(wrapped.text);
  if (wrapped.text.trim() === '' || (Number.isNaN(number) && !/^[+-]?NaN$/.test(wrapped.text))) {
    throw new Error(`${wrapped.key} holds ${JSON.stringify(wrapped.text)}, not a number`);
  }
  return number;
}

const shown = (value) => {
  const text = typeof value === 'bigint' ? String(value) : JSON.stringify(value) ?? String(value);
  return text.length <= 60 ? text : text.slice(0, 57) + '...';
};

// -- the rules (README, "Feeding the graph from another language") --------------------------
// float32: the number; null, absent and NaN are NaN (missing).
function numberValue(value) {
  if (value === ABSENT || value === null) return NaN;
  const wrapped = wrappedNumber(value);
  const number = wrapped ? wrappedValue(wrapped) : value;
  if (typeof number !== 'number') {
    const hint = typeof value === 'boolean' ? ' (a boolean: list it under [features].categorical)' : '';
    throw new Error(`expected a number, got ${shown(value)}${hint}`);
  }
  if (Number.isNaN(number)) return NaN;
  if (!(Math.abs(number) <= FLOAT32_MAX)) {
    throw new Error(`${shown(value)} is not a finite number within float32 range`);
  }
  return number;
}

// A number's category text: an integral one as its integer digits (3.0 → "3", 1e22 → all 23 digits);
// another as the shortest text that reads back as the same float64, in fixed notation from 1e-4 to
// 1e16 and as d.ddde-XX (two exponent digits at least) below: 0.5, 0.0001, 1e-05, 2.5e-07.
function numberText(number) {
  if (Number.isNaN(number)) return MISSING_CATEGORY;
  if (!Number.isFinite(number)) throw new Error(`expected a category, got ${number}`);
  if (Number.isInteger(number)) return BigInt(number).toString();
  const [digits, exponent] = number.toExponential().split('e'); // the shortest round-trip digits
  const power = Number(exponent);
  if (power >= -4 && power < 16) return String(number); // JavaScript writes these in fixed notation too
  return `${digits}e${power < 0 ? '-' : '+'}${String(Math.abs(power)).padStart(2, '0')}`;
}

// string (categorical): strings as they are; true/false; numbers as numberText; an ObjectId as its
// 24 hex digits; null, absent and NaN are "__missing__".
function categoryText(value) {
  if (value === ABSENT || value === null) return MISSING_CATEGORY;
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return numberText(value);
  const wrapped = wrappedNumber(value);
  if (wrapped && (wrapped.key === '$numberInt' || wrapped.key === '$numberLong') && /^-?\d+$/.test(wrapped.text)) {
    return BigInt(wrapped.text).toString(); // every digit, even beyond 2^53
  }
  if (wrapped) return numberText(wrappedValue(wrapped));
  if (isObject(value) && typeof value.$oid === 'string' && Object.keys(value).length === 1) return value.$oid;
  if (isObject(value) && '$date' in value) throw new Error(`a date is not a category (${shown(value)})`);
  throw new Error(`expected a category (string, number or boolean), got ${shown(value)}`);
}

// string (text): the text; null and absent are "".
function textValue(value) {
  if (value === ABSENT || value === null) return '';
  if (typeof value === 'string') return value;
  const wrapped = wrappedNumber(value);
  if (wrapped && wrapped.key === '$numberDouble' && wrapped.text === 'NaN') return '';
  throw new Error(`expected text, got ${shown(value)}`);
}

// int64-ms: milliseconds since 1970-01-01 UTC, rounded down; null and absent are the smallest int64.
// An ISO 8601 string (no offset = UTC) or Extended JSON {"$date": "..."} / {"$date": {"$numberLong": "..."}}.
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|z|[+-]\d{2}:?\d{2})?)?$/;

function isoMilliseconds(text) {
  const m = ISO.exec(text.trim());
  if (!m) throw new Error(`expected a date, got ${shown(text)} (not ISO 8601, e.g. 2024-05-01T12:00:00Z)`);
  const [year, month, day, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map((part) => Number(part ?? 0));
  const millisecond = Number(((m[7] ?? '') + '000').slice(0, 3)); // sub-millisecond digits are dropped
  const moment = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, millisecond));
  moment.setUTCFullYear(year); // Date.UTC reads years 0-99 as 1900-1999
  const real = year >= 1 && moment.getUTCMonth() === month - 1 && moment.getUTCDate() === day;
  if (!real || hour > 23 || minute > 59 || second > 59) {
    throw new Error(`expected a date, got ${shown(text)} (no such day or time)`);
  }
  let offset = 0;
  if (m[8] && m[8].toUpperCase() !== 'Z') {
    const sign = m[8][0] === '-' ? -1 : 1;
    offset = sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(-2))) * 60000;
  }
  return BigInt(moment.getTime() - offset);
}

function dateValue(value) {
  if (value === ABSENT || value === null) return MISSING_DATE;
  if (typeof value === 'string') return isoMilliseconds(value);
  if (isObject(value) && Object.keys(value).length === 1 && '$date' in value) {
    const inner = value.$date;
    if (typeof inner === 'string') return isoMilliseconds(inner);
    if (Number.isInteger(inner)) return BigInt(inner);
    const long = wrappedNumber(inner);
    if (long && long.key === '$numberLong' && /^-?\d+$/.test(long.text)) return BigInt(long.text);
  }
  if (wrappedNumber(value)?.text === 'NaN') return MISSING_DATE;
  throw new Error(`expected a date (an ISO 8601 string or {"$date": ...}), got ${shown(value)}`);
}

// The rules, in one object (a test swaps one for a wrong one to see that it is caught).
const rules = { numberValue, categoryText, textValue, dateValue };

// Each input's type (and kind) → how one value is read, and the tensor its column becomes.
function reader(input) {
  const column = (type, values) => new ort.Tensor(type, values, [values.length, 1]);
  switch (input.type) {
    case 'float32':
      return [rules.numberValue, (values) => column('float32', Float32Array.from(values))];
    case 'int64-ms':
      return [rules.dateValue, (values) => column('int64', BigInt64Array.from(values))];
    case 'string':
      return [input.kind === 'text' ? rules.textValue : rules.categoryText, (values) => column('string', values)];
    default:
      throw new Error(`input '${input.name}' has a type this client does not know: ${input.type}`);
  }
}

// The model's own test vectors of the rule (metadata.inputs_contract), run through this client.
function checkContract(contract) {
  if (contract.version !== CONTRACT_VERSION) {
    const versions = `version ${contract.version}; this client implements ${CONTRACT_VERSION}`;
    throw new Error(`this model's inputs follow rule ${versions}`);
  }
  const cases = [
    ...contract.category_text.map(([value, expected]) => [value, expected, rules.categoryText(value)]),
    ...contract.int64_ms.map(([value, expected]) => [value, BigInt(expected), rules.dateValue(value)]),
  ];
  for (const [value, expected, got] of cases) {
    if (got !== expected) {
      const says = `the model's contract says ${shown(expected)}`;
      throw new Error(`this client reads ${shown(value)} as ${shown(got)}, ${says}`);
    }
  }
}

// -- documents → feeds → predictions ---------------------------------------------------------------
function graphInputs(metadata) {
  if (metadata.inputs_contract) checkContract(metadata.inputs_contract); // older models have none
  // Models built before `inputs` existed list their features only (numbers and categories).
  const features = (metadata.features ?? []).map((f) => ({ name: f.input, path: f.name, kind: f.kind, type: f.dtype }));
  const inputs = metadata.inputs ?? features;
  if (!inputs.length) throw new Error('not an mlpack model: its metadata lists no inputs');
  return inputs.map((input) => {
    const [read, tensor] = reader(input);
    return { ...input, read, tensor };
  });
}

function feeds(inputs, batch) {
  const result = {};
  for (const input of inputs) {
    const values = batch.map(({ line, document }) => {
      try {
        return input.read(lookup(document, input.path));
      } catch (error) {
        throw new Error(`line ${line}: field '${input.path}': ${error.message}`);
      }
    });
    result[input.name] = input.tensor(values);
  }
  return result;
}

async function predictBatch(session, metadata, inputs, batch) {
  const outputs = await session.run(feeds(inputs, batch));
  const first = outputs[session.outputNames[0]].data;
  if (metadata.task !== 'classification') return Array.from(first, (value) => ({ prediction: value }));
  // The graph emits class codes; `classes` holds what they stand for (booleans, label names).
  const codes = (metadata.class_codes ?? metadata.classes).map(String);
  const label = (code) => metadata.classes[codes.indexOf(String(code))];
  const width = metadata.classes.length;
  const probabilities = metadata.probabilities === false ? null : outputs[session.outputNames[1]].data;
  return Array.from(first, (code, row) => {
    const answer = { prediction: label(code) };
    if (probabilities) answer.probabilities = Array.from(probabilities.slice(row * width, (row + 1) * width));
    return answer;
  });
}

async function main(argv) {
  const args = argv.slice();
  const at = args.indexOf('--metadata');
  const metadataPath = at >= 0 ? args.splice(at, 2)[1] : null;
  if (args.length < 1 || args.length > 2 || args[0].startsWith('-')) {
    throw new Error('usage: node predict.js model.onnx [documents.jsonl] [--metadata metadata.json]');
  }
  const [modelPath, documentsPath] = args;
  const model = fs.readFileSync(modelPath);
  const metadata = metadataPath ? JSON.parse(fs.readFileSync(metadataPath, 'utf8')) : onnxMetadata(model);
  const inputs = graphInputs(metadata);
  const session = await ort.InferenceSession.create(model);
  const input = documentsPath ? fs.createReadStream(documentsPath) : process.stdin;
  let batch = [];
  let number = 0;
  const flush = async () => {
    const answers = await predictBatch(session, metadata, inputs, batch);
    process.stdout.write(answers.map((answer) => JSON.stringify(answer) + '\n').join(''));
    batch = [];
  };
  for await (const text of readline.createInterface({ input, crlfDelay: Infinity })) {
    number += 1;
    if (!text.trim()) continue;
    let document;
    try {
      document = JSON.parse(text);
    } catch (error) {
      throw new Error(`line ${number}: not valid JSON: ${error.message}`);
    }
    if (!isObject(document)) throw new Error(`line ${number}: expected an object of fields, got ${shown(document)}`);
    batch.push({ line: number, document });
    if (batch.length >= BATCH) await flush();
  }
  if (batch.length) await flush();
}

module.exports = { rules, onnxMetadata, lookup, numberText, checkContract, graphInputs, main };

if (require.main === module) {
  main(process.argv.slice(2)).catch((error) => {
    process.stderr.write(`predict.js: ${error.message}\n`);
    process.exit(1);
  });
}
