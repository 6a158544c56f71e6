"""How long a spend summary takes over a million runs, in PostgreSQL, for each `group_by`.

    .venv/bin/python bench/cost_summary.py [--runs 1000000] [--repeat 5]

Creates a throwaway database `bench_costs_<pid>` on 127.0.0.1:5432 (user postgres; dropped at the end),
migrates it, and generates in SQL (generate_series: seconds, not hours) one project's `--runs` runs over
90 days, each with its cost entry: 20 prompts, 5 models, 8 members, 10 keys, one entry in fifty of
unknown cost. The first summary rolls up the whole final days (billing/rollup.py) and is timed once,
apart. Then times `billing.selectors.cost_summary` (the query behind GET /api/v1/costs/summary)
`--repeat` times per grouping, over the whole range and over its last 30 days, and prints the median
against the issue's target (100 ms), and the same aggregate over the table with no grouping as the
baseline of the run (what reading the rows costs the database at all).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    name = f"bench_costs_{os.getpid()}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}", "REDIS_URL": ""}
    env.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    with psycopg.connect(admin, autocommit=True) as server:
        server.execute(f"CREATE DATABASE {name}")
    try:
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        subprocess.run(migrate, cwd=ROOT, env=env, check=True)  # noqa: S603 - our own manage.py
        os.environ.update(env)
        measure(args)
    finally:
        with psycopg.connect(admin, autocommit=True) as server:
            server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def measure(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
    import django

    django.setup()
    from django.db import connection

    from accounts.keys import hash_secret
    from accounts.models import APIKey, Project, User
    from billing import selectors
    from billing.models import CostDay, CostRollup
    from prompts.models import Prompt, PromptVersion

    owner = User.objects.create_user(username="owner")
    project = Project.objects.get(personal_for=owner)
    members = [owner, *(User.objects.create_user(username=f"member{i}") for i in range(7))]
    keys = [
        APIKey.objects.create(
            project=project, created_by=owner, name=f"k{i}", prefix=f"llm_bench{i}", secret_hash=hash_secret(f"k{i}")
        )
        for i in range(10)
    ]
    versions = []
    for i in range(20):
        prompt = Prompt.objects.create(project=project, name=f"prompt-{i}", latest_version_number=1)
        versions.append(
            PromptVersion.objects.create(prompt=prompt, number=1, kind="text", template="Hi", model="local/smollm2")
        )
    end = datetime.now(UTC)
    start = end - timedelta(days=90)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # The ids to spread the rows over, as arrays indexed by i % n (1-based in SQL).
        cursor.execute(
            """
            WITH ids AS (
                SELECT %(versions)s::uuid[] AS versions, %(members)s::uuid[] AS members, %(keys)s::uuid[] AS keys
            ), rows AS (
                SELECT i, gen_random_uuid() AS run_id,
                       %(start)s::timestamptz + (i::float / %(n)s) * interval '90 days' AS at
                FROM generate_series(1, %(n)s) AS i
            ), runs AS (
                INSERT INTO runs_run (id, created_at, updated_at, project_id, created_by_id, api_key_id,
                    prompt_version_id, execution, variables, rendered_input, provider, model, params, metadata,
                    request_hash, status, output, finish_reason, prompt_tokens, completion_tokens, total_tokens,
                    tokens_estimated, latency_ms, attempts, error_code, error_message, attempt_log, cached,
                    label, split_arm, split_key_hash)
                SELECT run_id, at, at, %(project)s, members[1 + i %% 8], keys[1 + i %% 10], versions[1 + i %% 20],
                    'worker', '{}', '[]', 'local', 'model-' || (i %% 5), '{}', '{}', '', 'succeeded', '', 'stop',
                    100 + i %% 50, 20 + i %% 30, 120 + i %% 50 + i %% 30, false, 100, 1, '', '', '[]', false,
                    '', false, ''
                FROM rows, ids
                RETURNING id, created_at, created_by_id, api_key_id, prompt_version_id, model, prompt_tokens,
                    completion_tokens
            )
            INSERT INTO billing_costlog (id, created_at, updated_at, run_id, project_id, created_by_id, api_key_id,
                prompt_version_id,
                provider, model, prompt_tokens, completion_tokens, tokens_estimated, input_cost, output_cost,
                total_cost, currency, cost_known)
            SELECT gen_random_uuid(), created_at, created_at, id, %(project)s, created_by_id, api_key_id,
                prompt_version_id,
                'local', model, prompt_tokens, completion_tokens, false,
                CASE WHEN abs(hashtext(id::text)) %% 50 = 0 THEN NULL ELSE prompt_tokens * 0.000001 END,
                CASE WHEN abs(hashtext(id::text)) %% 50 = 0 THEN NULL ELSE completion_tokens * 0.000002 END,
                CASE WHEN abs(hashtext(id::text)) %% 50 = 0 THEN NULL
                     ELSE prompt_tokens * 0.000001 + completion_tokens * 0.000002 END,
                'USD', abs(hashtext(id::text)) %% 50 <> 0
            FROM runs
            """,
            {
                "versions": [str(v.pk) for v in versions],
                "members": [str(m.pk) for m in members],
                "keys": [str(k.pk) for k in keys],
                "start": start,
                "n": args.runs,
                "project": str(project.pk),
            },
        )
        cursor.execute("ANALYZE runs_run; ANALYZE billing_costlog")
    print(f"{args.runs:,} runs and cost entries generated in {time.perf_counter() - started:.1f} s")

    def timed(call) -> float:
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    began = time.perf_counter()
    selectors.cost_summary(project=project, start=start, end=end, group_by="day")
    first = (time.perf_counter() - began) * 1000
    rolled = CostRollup.objects.filter(project=project).count()
    print(
        f"the first summary, which rolls up the {rolled} whole final days (billing/rollup.py): {first:.1f} ms; "
        f"{CostDay.objects.filter(project=project).count():,} rollup rows"
    )

    baseline = timed(
        lambda: selectors.cost_total(logs=selectors.cost_logs_between(project=project, start=start, end=end))
    )
    print(f"\nbaseline: the totals alone over all {args.runs:,} entries: {baseline:.1f} ms (median of {args.repeat})")
    print(
        f"\n{'group_by':>10} | {'90 days ms':>10} | {'30 days ms':>10} | {'x baseline':>10} | target {TARGET_MS:.0f} ms"
    )
    for group in selectors.GROUPINGS:
        whole = timed(lambda g=group: selectors.cost_summary(project=project, start=start, end=end, group_by=g))
        recent = timed(
            lambda g=group: selectors.cost_summary(project=project, start=end - timedelta(days=30), end=end, group_by=g)
        )
        verdict = "PASS" if whole <= TARGET_MS else "MISS"
        print(f"{group:>10} | {whole:10.1f} | {recent:10.1f} | {whole / baseline:10.2f} | {verdict}")


if __name__ == "__main__":
    main()
