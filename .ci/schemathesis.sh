#!/usr/bin/env bash
# Fuzz the running API with Schemathesis: `bash .ci/schemathesis.sh` (a check step of .ci/run).
#
# Starts gunicorn on the embedded default (a fresh SQLite file in a temporary directory, in-process
# broker) with production settings (DEBUG off), creates a user, API keys, a provider, a prompt and a
# run, then runs Schemathesis over every operation of /api/schema/: positive and negative cases,
# every check, authenticated with `Authorization: Bearer <key>`. Exits non-zero on any finding.
# positive_data_acceptance runs with its default statuses (no 400): only the operations named in the
# hooks file below may answer a schema-valid request with 400, and only for the rules it names.
#
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (cases per operation and phase), SCHEMATHESIS_SEED (replay a run),
# SCHEMATHESIS_WORKERS, SCHEMATHESIS_DATABASE_URL (an empty database instead of the fresh SQLite file);
# SCHEMATHESIS_SUMMARY names a file that gets the one-line summary (.ci/run).
set -euo pipefail

cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
WORKERS="${SCHEMATHESIS_WORKERS:-2}"
SEED="${SCHEMATHESIS_SEED:-}"

work="$(mktemp -d)"
server_pid=""
provider_pid=""

cleanup() {
    if [ -n "$provider_pid" ] && kill -0 "$provider_pid" 2>/dev/null; then
        kill -TERM "$provider_pid"
        wait "$provider_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Exactly this environment, whatever the caller's or .env says (variables set here win over .env):
# a throwaway database, never var/db.sqlite3 (SCHEMATHESIS_DATABASE_URL may name another, empty,
# database, e.g. PostgreSQL); no Redis; production settings.
export DATABASE_URL="${SCHEMATHESIS_DATABASE_URL:-sqlite:///$work/db.sqlite3}"
export REDIS_URL=""
export DEBUG="false"
export SECRET_KEY="schemathesis-only-not-a-secret"
export ALLOWED_HOSTS="127.0.0.1"
# Thousands of requests from one key: throttling them would hide the answers under test.
export RATE_LIMIT_ENABLED="0"
# Runs go to the OpenAI-compatible test server (below), which answers at once; one attempt each.
export RUN_MAX_ATTEMPTS="1"
export RUN_WAIT_MAX_S="2"
export LOG_FORMAT="text"
export LOG_LEVEL="WARNING"

port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"

echo "Database: $DATABASE_URL"
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py shell -v 0 -c '
from accounts.models import User
User.objects.create_user(username="fuzz", email="fuzz@example.com")
'
# Two keys. Schemathesis can revoke or rotate any key it finds in GET /api/v1/keys, its own
# included, and everything after that would be a 401: the operations that do that run last, in a
# second pass, with a key of their own.
key="$("$PY" manage.py createapikey fuzz --name schemathesis 2>/dev/null)"
keys_key="$("$PY" manage.py createapikey fuzz --name schemathesis-keys 2>/dev/null)"
# The provider is the tests' OpenAI-compatible server (providers/tests/openai_server.py): a run, and a
# gateway call, gets an answer at once instead of waiting for a model (or a 502 from a dead one).
"$PY" -m providers.tests.openai_server --models smollm2 >"$work/provider.url" 2>"$work/provider.log" &
provider_pid=$!
for _ in $(seq 1 50); do
    [ -s "$work/provider.url" ] && break
    sleep 0.1
done
"$PY" manage.py provider set local --kind openai-compatible --base-url "$(head -n 1 "$work/provider.url")" >/dev/null

echo "Starting gunicorn on $base"
"$VENV/bin/gunicorn" llmops.wsgi:application --bind "127.0.0.1:$port" --workers 2 --threads 4 \
    --timeout 60 --no-control-socket >"$work/server.log" 2>&1 &
server_pid=$!

ready=0
for _ in $(seq 1 60); do
    if curl -fsS "$base/api/v1/health" >/dev/null 2>&1; then
        ready=1
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 1
done
if [ "$ready" -ne 1 ]; then
    echo "The server did not become healthy within 60 s." >&2
    cat "$work/server.log" >&2
    exit 1
fi

api() {  # api METHOD PATH [JSON]: one call with the main key; prints the body, fails on 4xx/5xx
    curl -fsS -X "$1" "$base$2" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' ${3:+-d "$3"}
}
json_field() {  # json_field NAME < JSON
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# Real objects for the fuzzer to reach, created through the API itself: a prompt with two
# versions and a label, and a run (the test server answers it).
prompt_id="$(api POST /api/v1/prompts '{"name": "greet", "template": "Hello {{ name }}",
    "variables": {"name": {"type": "string", "default": "world"}}, "model": "local/smollm2"}' | json_field id)"
api POST /api/v1/prompts/greet/versions '{"messages": [{"role": "user", "content": "Hi {{ name }}"}],
    "variables": {"name": {"type": "string"}}, "model": "local/smollm2"}' >/dev/null
api PUT /api/v1/prompts/greet/labels/production '{"version": 1}' >/dev/null
# DELETE archives a prompt, after which greet would take no new version: it archives this one.
api POST /api/v1/prompts '{"name": "archive-me", "template": "Bye", "model": "local/smollm2"}' >/dev/null
run_id="$(api POST '/api/v1/runs?wait=2' '{"prompt": "greet", "variables": {"name": "CI"}}' | json_field id)"

# positive_data_acceptance (a schema-valid request is not refused with 400): the schema states every
# rule JSON Schema (OpenAPI 3.0) can state, so a 400 is allowed only on the operations whose requests
# can break a rule no schema can state, and there only for that rule. A custom check (the hooks file
# below) names each such rule, by the fields the 400 names, and fails any other 400 of a schema-valid
# request; every other operation gets the built-in check's default statuses (no 400 at all).
cat >"$work/hooks.py" <<'PY'
"""Schemathesis hooks written by .ci/schemathesis.sh: the 400s a schema-valid request may get."""

import json
import re

import schemathesis

EXISTS = "names something that must exist (what exists is data, not schema)"
RENDERS = "values of the variables the version declares (the version's schema is data, not the API's)"
TEMPLATE = "a Jinja2 template using only declared variables (a grammar and a cross-reference)"
PROVIDER = "a model that a configured, enabled provider serves (data)"
VARIABLES = [
    ("variables.", "identifiers", "variable names are identifiers: OpenAPI 3.0 cannot constrain keys"),
    # (An anyOf per type states it, but makes Schemathesis 4.32 fail to generate negative cases.)
    ("variables.", "default must be of type", "a default of the variable's declared type"),
]
# Operation -> [(field, message pattern, the rule and why no schema states it)]. A field ending in "."
# is a prefix (`variables.` is `variables.name`, ...). A 400 of a schema-valid request passes only if
# every field it names matches an entry of its operation.
UNSTATABLE = {
    "GET /api/v1/costs/summary": [("to", "after `from`", "`to` after `from`: a relation between two parameters")],
    "POST /api/v1/keys": [
        ("expires_at", "in the future", "a time in the future: depends on the clock"),
        ("scopes", "cannot grant", "only scopes the calling key holds"),
    ],
    "POST /api/v1/budgets": [("api_key", "None of this project's API keys", EXISTS)],
    "POST /api/v1/webhooks": [("url", "", "a URL that resolves to a public address: depends on DNS")],
    "PATCH /api/v1/webhooks/{id}": [("url", "", "a URL that resolves to a public address: depends on DNS")],
    "POST /api/v1/prompts": [
        ("template", "syntax error|undeclared", TEMPLATE),
        ("messages.", "syntax error|undeclared", TEMPLATE),
        *VARIABLES,
        ("model", "provider", PROVIDER),
    ],
    "POST /api/v1/prompts/{ref}/versions": [
        ("template", "syntax error|undeclared", TEMPLATE),
        ("messages.", "syntax error|undeclared", TEMPLATE),
        *VARIABLES,
        ("model", "provider", PROVIDER),
        ("based_on", "No such version", EXISTS),
    ],
    "POST /api/v1/prompts/{ref}/render": [
        ("version", "No such version", EXISTS),
        ("label", "No such label", EXISTS),
        ("variables.", "", RENDERS),
    ],
    "PUT /api/v1/prompts/{ref}/labels/{label}": [
        ("version", "No such version", EXISTS),
        ("split.", "No such version|each version once", f"{EXISTS}; each arm a different version"),
        ("split", "sum to|label's version", "weights summing to 100, the label's version an arm: arithmetic and a cross-reference"),
    ],
    "POST /api/v1/runs": [
        ("prompt", "No such prompt", EXISTS),
        ("version", "No such version", EXISTS),
        ("label", "No such label", EXISTS),
        ("variables.", "", RENDERS),
        ("model", "provider|has no model", PROVIDER),
        ("prompt", "provider|has no model", PROVIDER),
        ("params.fallbacks.", "provider|has no model", PROVIDER),
    ],
    "POST /api/v1/batches": [
        ("prompt", "No such prompt", EXISTS),
        ("version", "No such version", EXISTS),
        ("label", "No such label", EXISTS),
        ("prompt", "provider|has no model", PROVIDER),
        ("items.", "", f"{RENDERS}; unique keys; a file's rows"),
        ("items", "At most|No valid items", "at most BATCH_MAX_ITEMS rows in a file; some valid row"),
        # (`minLength: 1` states it, but on a binary part it crashes Schemathesis 4.32's coverage phase.)
        ("file", "is empty", "a non-empty file"),
    ],
}
UNSTATABLE["GET /api/v1/prompts/{ref}/labels/{label}/report"] = [
    ("to", "after `from`", "`to` after `from`: a relation between two parameters"),
]
UNSTATABLE["POST /api/v1/datasets/{name}/examples/remove"] = [("ids.", "No such example", EXISTS)]
UNSTATABLE["POST /api/v1/datasets/{name}/examples/from-run"] = [("run", "No such run|Not succeeded", EXISTS)]
UNSTATABLE["POST /api/v1/datasets/{name}/import"] = [
    ("examples.", "", "a file's rows: each a valid example (the file's content is not the schema's)"),
    ("examples", "At least|At most", "some rows, at most MAX_EXAMPLES_PER_APPEND"),
    ("file", "is empty", "a non-empty file"),
]
UNSTATABLE["GET /api/v1/prompts/{ref}/resolve"] = [
    ("label", "not both", "label and version exclude each other: a relation between two query parameters"),
]
UNSTATABLE["POST /v1/chat/completions"] = [
    ("model", "provider|has no model", PROVIDER),
    ("fallbacks.", "provider|has no model", PROVIDER),
    ("variables.", "", RENDERS),
]
UNSTATABLE["POST /api/v1/experiments"] = [
    ("prompt", "No such prompt", EXISTS),
    ("dataset", "No such dataset", EXISTS),
    ("dataset_version", "", f"{EXISTS}; a version holding examples"),
    ("versions.", "", f"{EXISTS}; each version once"),
    ("versions", "At most", "at most MAX_ARMS versions"),
    ("scorers.", "", "options a scorer takes (each scorer's own, data); each scorer once"),
    ("params.", "", "the versions' parameters (checked as a run's)"),
]
UNSTATABLE["GET /api/v1/experiments/{id}/compare"] = [
    ("baseline", "No arm", EXISTS),
    ("candidate", "No arm|Must differ", f"{EXISTS}; not the baseline (a relation between two parameters)"),
    ("scorer", "has no scorer", EXISTS),
]
UNSTATABLE["POST /api/v1/prompts/{ref}/gates"] = [("dataset", "No such dataset", EXISTS)]
UNSTATABLE["POST /api/v1/run"] = [
    *UNSTATABLE["POST /api/v1/runs"],
    ("prompt_version_id", "No such prompt version", EXISTS),
]
# The JSON parser refuses NUL in any key (`parse_error`, no field; a multipart form's JSON text: that
# field), and OpenAPI 3.0 cannot constrain the keys of a free-form object: allowed where a body has one.
FREE_FORM_KEYS = {
    "POST /api/v1/prompts",
    "POST /api/v1/prompts/{ref}/versions",
    "POST /api/v1/prompts/{ref}/render",
    "POST /api/v1/runs",
    "POST /api/v1/run",
    "POST /api/v1/batches",
    "POST /api/v1/datasets/{name}/examples",
    "POST /api/v1/experiments",  # a scorer's `options`
    "POST /api/v1/keys",
    "POST /api/v1/keys/{id}/rotate",
    "POST /api/v1/webhooks",
    "PATCH /api/v1/webhooks/{id}",
    "POST /v1/chat/completions",
}
ALLOWS_400 = sorted({*UNSTATABLE, *FREE_FORM_KEYS})


def _explained(operation, field, problems):
    if operation in FREE_FORM_KEYS and all("must not contain NUL" in problem for problem in problems):
        return True
    return any(
        (field == name or (name.endswith(".") and field.startswith(name)))
        and any(re.search(pattern, problem) for problem in problems)
        for name, pattern, _ in UNSTATABLE.get(operation, [])
    )


@schemathesis.hook
def map_headers(ctx, headers):
    """X-Project names the project a session acts in; the fuzzer's key acts in its own, and any other
    value is a 404 by design (no hint that a project exists), which would hide every other rule."""
    if headers:
        headers.pop("X-Project", None)
    return headers


@schemathesis.check
def positive_data_400_is_an_unstatable_rule(ctx, response, case):
    """A schema-valid request refused with 400 is refused for a rule its operation names above."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return None
    operation = case.operation.label
    if operation not in ALLOWS_400:
        return None  # positive_data_acceptance fails every 400 of these
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError("A 400 without the API's error shape") from None
    if error["code"] == "parse_error" and "NUL" in error["message"] and operation in FREE_FORM_KEYS:
        return None
    fields = error.get("fields") or {}
    unexplained = {field: problems for field, problems in fields.items() if not _explained(operation, field, problems)}
    if unexplained or not fields:
        raise AssertionError(
            "Schema-valid request refused for a rule the schema could state: "
            + json.dumps(unexplained or error["message"], ensure_ascii=False)
        )
    return None


if __name__ == "__main__":  # the TOML below lists these operations
    print(json.dumps(ALLOWS_400))
PY

# Schemathesis' configuration. Every departure from its defaults has its reason next to it.
cat >"$work/schemathesis.toml" <<TOML
hooks = "$work/hooks.py"

# Crash files for \`st replay\` stay in the temporary directory, not in the checkout.
[cache]
directory = "$work/cache"

# positive_data_acceptance: its default statuses plus 402, a budget that a fuzzed POST /api/v1/budgets
# may have set. No 400: a schema-valid request must be accepted (but see the operations below).
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "402", "403", "404", "409", "429", "5xx"]

# negative_data_rejection: its default statuses plus 413. A generated invalid body can also be over
# DATA_UPLOAD_MAX_MEMORY_SIZE, and refusing it for its size is rejecting it.
[checks.negative_data_rejection]
# And 414: an invalid query long enough is refused by gunicorn before Django sees it (documented as such).
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "5xx"]

# The real objects above, mixed into the generated values so that requests get past the 404.
[dictionaries.prompt]
values = ["greet", "$prompt_id"]
[dictionaries.archivable]
values = ["archive-me"]
[dictionaries.run]
values = ["$run_id"]
[dictionaries.version]
values = [1, 2]
[dictionaries.label]
values = ["production", "latest"]

[parameters]
"path.ref" = { dictionary = "prompt", probability = 0.5 }
"path.number" = { dictionary = "version", probability = 0.5 }
"path.label" = { dictionary = "label", probability = 0.5 }
"path.id" = { dictionary = "run", probability = 0.3 }
"body.prompt" = { dictionary = "prompt", probability = 0.5 }
"query.prompt" = { dictionary = "prompt", probability = 0.5 }

[[operations]]
include-name = "DELETE /api/v1/prompts/{ref}"
parameters = { "path.ref" = { dictionary = "archivable", probability = 0.5 } }

# The operations whose schema-valid requests may still break a rule no schema states (each rule and
# its reason: the hooks file): 400 is expected here, and the custom check judges each 400.
[[operations]]
include-name = $("$PY" "$work/hooks.py")
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "402", "403", "404", "409", "429", "5xx"]
TOML

seed_args=()
[ -z "$SEED" ] || seed_args=(--seed "$SEED")

fuzz() {  # fuzz NAME KEY FILTER...: one Schemathesis pass; its JSON report is $work/NAME.json
    local name="$1" bearer="$2"
    shift 2
    "$VENV/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/api/schema/" \
        --header "Authorization: Bearer $bearer" \
        --mode all \
        --checks all \
        --max-examples "$MAX_EXAMPLES" \
        --workers "$WORKERS" \
        --request-timeout 30 \
        --generation-database none \
        --no-color \
        --report json --report-json-path "$work/$name.json" \
        "${seed_args[@]}" "$@" 2>&1 | tee "$work/$name.log"
}

rc=0
echo
echo "=== Pass 1: every operation but those that revoke or rotate a key ==="
# A pass's exit code is not used: the summary below judges its JSON report, so that a known crash
# inside Hypothesis itself is not taken for a finding against the API.
fuzz main "$key" --exclude-path-regex '^/api/v1/keys/' || true
# If the main key stopped working, pass 1 ended as a string of 401s and proves little.
if ! curl -fsS -o /dev/null "$base/api/v1/keys" -H "Authorization: Bearer $key"; then
    echo "The main API key no longer authenticates after pass 1: the fuzz results are not meaningful." >&2
    rc=1
fi
echo
echo "=== Pass 2: the key operations, with a key of their own ==="
fuzz keys "$keys_key" --include-path-regex '^/api/v1/keys' || true

echo
echo "=== Schemathesis summary ==="
"$PY" - "$work/main.json" "$work/keys.json" <<'PY' || rc=1
import json
import os
import re
import sys

total = failures = 0
missing = []
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        print(f"{path}: no report (Schemathesis did not finish)")
        sys.exit(1)
    cases = report["test_cases"]
    total += cases["generated"]
    # Hypothesis on CPython 3.11 sometimes crashes introspecting its own lambdas ("AST constructor
    # recursion depth mismatch", a SystemError inside the generator, before any request is sent),
    # alone or wrapped in a FlakyFailure ("Runtime Error"). It says nothing about the API, so it is
    # reported but not counted; every other error counts. The JSON report keeps only each error's
    # title, so the crashes are counted in the pass's console output (its per-error blocks).
    errors = sum(int(e.get("count", 1)) for e in report["errors"])
    try:
        with open(path[: -len(".json")] + ".log") as f:
            blocks = re.split(r"^_{5,} .+ _{5,}$", f.read(), flags=re.MULTILINE)[1:]
    except OSError:
        blocks = []
    tool_crashes = min(errors, sum("AST constructor recursion depth mismatch" in block for block in blocks))
    if tool_crashes:
        print(f"{path.rsplit('/', 1)[-1]}: {tool_crashes} Hypothesis-internal crash(es) ignored")
    failures += cases["unique_failures"] + errors - tool_crashes
    print(
        f"{path.rsplit('/', 1)[-1]}: {report['operations']['tested']} operations, {cases['generated']} cases, "
        f"{cases['unique_failures']} unique failures, {len(report['errors'])} errors"
    )
    if path.endswith("main.json"):
        # Refused to every key by design, with its reason (llmops/tests/test_access_matrix.py tests it
        # signed in): answering only 403 there is the rule, not a key that stopped working.
        refused_to_keys = {"POST /api/v1/projects": "a key acts only inside its project; users create projects"}
        missing = [op for op in report["warnings"].get("missing_auth", []) if op not in refused_to_keys]
line = f"schemathesis: {total} cases, {failures} findings"
print(line)
if os.environ.get("SCHEMATHESIS_SUMMARY"):
    with open(os.environ["SCHEMATHESIS_SUMMARY"], "w") as f:
        print(line, file=f)
if missing:
    # Pass 1 keeps its key: an operation that only ever answered 401/403 was never really tested.
    print(f"Operations that answered only 401/403 in pass 1: {missing}")
    sys.exit(1)
if failures:
    sys.exit(1)
PY

if [ "$rc" -ne 0 ]; then
    echo "--- server log: errors ---"
    grep -E -A 30 'ERROR|Traceback' "$work/server.log" | tail -80 || true
fi
exit "$rc"
