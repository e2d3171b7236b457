// Validates instances against schemas of an OpenAPI 3.1 document with
// ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1) and ajv-formats,
// for t/openapi.t.
//
//   node openapi-check.cjs DOC CASES
//
// NODE_MODULES: where scripts/node-tools installed ajv.  CASES is a JSON
// array of {"name", "pointer", "instance", "coerce"}: "pointer" a JSON
// pointer into DOC to the schema ("#/paths/~1health/get/..."); "coerce"
// for a header's value (a string on the wire: "86400" is the integer of
// its schema).  Prints a JSON array of {"name", "ok", "errors"}.
'use strict';

const fs = require('fs');
const path = require('path');
const modules = process.env.NODE_MODULES;
const Ajv2020 = require(path.join(modules, 'ajv/dist/2020')).default;
const addFormats = require(path.join(modules, 'ajv-formats')).default;

const doc = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const cases = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));

// the document itself is the schema resource: its $refs
// ("#/components/schemas/Event") resolve inside it; OpenAPI's own keys
// (paths, responses, ...) are not schema keywords, hence strict off
function make(coerce) {
    const ajv = new Ajv2020({ strict: false, allErrors: true,
                              coerceTypes: coerce });
    addFormats(ajv);
    ajv.addSchema(doc, 'openapi.json');
    return ajv;
}

const plain = make(false);
const coercing = make(true);
const out = [];

for (const c of cases) {
    const ajv = c.coerce ? coercing : plain;
    let ok = false, errors = null;
    try {
        const v = ajv.getSchema('openapi.json' + c.pointer);
        if (!v) {
            throw new Error('no schema at ' + c.pointer);
        }
        // a header's value is coerced in a wrapper: ajv coerces in place
        const data = c.coerce ? [c.instance] : c.instance;
        const check = c.coerce
            ? ajv.compile({ type: 'array', items: { $ref: 'openapi.json' + c.pointer } })
            : v;
        ok = check(data);
        errors = ok ? null : check.errors;
    } catch (e) {
        errors = [{ message: String(e.message || e) }];
    }
    out.push({ name: c.name, ok: ok, errors: errors });
}

process.stdout.write(JSON.stringify(out));
