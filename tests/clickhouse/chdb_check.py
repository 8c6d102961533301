"""Runs the shipped ClickHouse SQL on the current ClickHouse engine (chdb,
in-process): the tables, the Kafka engine table and its materialized view,
a sample row, and every analytics query. Exits non-zero with the failing
statement on any error. Usage: chdb_check.py CONF_CLICKHOUSE_DIR

The embedded engine cannot run a Kafka consumer, so a Kafka table is
checked twice instead: its statement must parse (formatQuery), and the same
table with ENGINE = Null carries the materialized view, whose rows are then
checked in request_logs."""
import glob
import os
import re
import sys
import tempfile

KAFKA_ENGINE = re.compile(r"ENGINE\s*=\s*Kafka\([^)]*\)")

from chdb import session as chs


def statements(path, values):
    text = open(path).read()
    for key, value in values.items():
        text = text.replace("{{%s}}" % key, value)
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))
    return [s.strip().rstrip(";").strip() for s in text.split(";\n") if s.strip().rstrip(";").strip()]


def main():
    conf = sys.argv[1]
    values = {"KAFKA_BROKERS": "127.0.0.1:9", "KAFKA_TOPIC": "floopy.request_logs",
              "KAFKA_FEEDBACK_TOPIC": "floopy.feedback",
              "KAFKA_GROUP": "chdb-check", "ORG_ID": "org-1"}
    with tempfile.TemporaryDirectory() as tmp:
        sess = chs.Session(tmp)
        ran = 0
        for path in sorted(glob.glob(os.path.join(conf, "*.sql"))):
            for sql in statements(path, values):
                try:
                    if KAFKA_ENGINE.search(sql):
                        quoted = sql.replace("\\", "\\\\").replace("'", "\\'")
                        sess.query(f"SELECT formatQuery('{quoted}')")
                        sql = KAFKA_ENGINE.sub("ENGINE = Null", sql)
                    sess.query(sql)
                except Exception as e:  # the statement and the engine's reason
                    print(f"FAILED {os.path.basename(path)}: {e}\n{sql}", file=sys.stderr)
                    sys.exit(1)
                ran += 1
        sess.query("""INSERT INTO request_logs FORMAT JSONEachRow {"request_id":"r1","ts_ms":1795792752434,"ts":"2026-11-27 10:00:00","org_id":"org-1","project_id":"p1","api_key_id":"k","environment":"production","provider":"openai","model":"gpt-4o","path":"/v1/chat/completions","status":200,"error_code":"","stream":0,"prompt_tokens":10,"completion_tokens":20,"cached_tokens":0,"cost_usd":0.000225,"cost_micro_usd":225,"latency_ms":2,"ttfb_ms":2,"session_id":"","user_id":"","property_keys":["team"],"property_values":["core"],"gateway_id":"g"}""")
        for path in sorted(glob.glob(os.path.join(conf, "queries", "*.sql"))):
            for sql in statements(path, values):
                try:
                    sess.query(sql, "CSV")
                except Exception as e:
                    print(f"FAILED {os.path.basename(path)}: {e}\n{sql}", file=sys.stderr)
                    sys.exit(1)
                ran += 1
        # Through the materialized view, as the Kafka engine would push it.
        sess.query("""INSERT INTO request_logs_kafka FORMAT JSONEachRow {"request_id":"r2","ts_ms":1795792752434,"org_id":"org-1","project_id":"p2","api_key_id":"k","environment":"","provider":"openai","model":"gpt-4o","path":"/v1/chat/completions","status":200,"error_code":"","stream":1,"prompt_tokens":10,"completion_tokens":20,"cached_tokens":0,"cost_usd":0.000225,"cost_micro_usd":225,"latency_ms":2,"ttfb_ms":2,"session_id":"","user_id":"","property_keys":[],"property_values":[],"gateway_id":"g"}""")
        # And through the direct sink's Null table and its view.
        sess.query("""INSERT INTO request_logs_direct FORMAT JSONEachRow {"request_id":"r3","ts_ms":1795792752434,"org_id":"org-1","project_id":"p2","api_key_id":"k","environment":"","provider":"openai","model":"gpt-4o","path":"/v1/chat/completions","status":200,"error_code":"","stream":1,"prompt_tokens":10,"completion_tokens":20,"cached_tokens":0,"cost_usd":0.000225,"cost_micro_usd":225,"latency_ms":2,"ttfb_ms":2,"session_id":"","user_id":"","property_keys":[],"property_values":[],"gateway_id":"g"}""")
        total = str(sess.query("SELECT sum(cost_micro_usd) FROM request_logs", "CSV")).strip()
        if total != "675":
            print(f"FAILED: sum(cost_micro_usd) is {total!r}, not 675 (one row inserted, one through each view)", file=sys.stderr)
            sys.exit(1)
        for table in ("feedback_kafka", "feedback_direct"):
            sess.query("INSERT INTO %s FORMAT JSONEachRow {\"feedback_id\":\"f-%s\",\"request_id\":\"r1\",\"ts_ms\":1795792752434,\"org_id\":\"org-1\",\"project_id\":\"p1\",\"api_key_id\":\"k\",\"user_id\":\"\",\"score\":0.5,\"comment\":\"\"}" % (table, table))
        scored = str(sess.query("SELECT count() FROM feedback WHERE ts = toDateTime(1795792752)", "CSV")).strip()
        if scored != "2":
            print(f"FAILED: {scored!r} feedback rows through the views, not 2", file=sys.stderr)
            sys.exit(1)
        print(f"chdb: {ran} statements ran")


if __name__ == "__main__":
    main()
