"""Runs the same SQL on a ClickHouse server (18.16 in the tests) and on the
current engine (chdb, in-process), on the same data, and compares the
answers cell by cell (numbers within 1e-9 relative: float sums may be added
in another order). Exits non-zero with the first difference.

Usage: compare_engines.py INPUT.json, where INPUT has
  clickhouse: the server's HTTP URL (its tables already loaded),
  sql:        the schema files to run on chdb,
  inserts:    [table, [JSON rows]] pairs to load into chdb, in order,
  statements: SQL to run on chdb after them (what the server's own jobs did),
  queries:    the SQL to compare (no FORMAT clause), each a string (it must
              return rows: the data set is made so that it does) or
              [sql, false] for one that may return none.
A query expected to return rows that returns none on both engines fails:
two empty answers agree on nothing."""
import json
import sys
import tempfile
import urllib.request

from chdb import session as chs


def statements(text):
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))
    return [s.strip().rstrip(";").strip() for s in text.split(";\n") if s.strip().rstrip(";").strip()]


def server(url, sql):
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read().decode()


def same(a, b):
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0)


def main():
    spec = json.load(open(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp:
        sess = chs.Session(tmp)
        for text in spec["sql"]:
            for sql in statements(text):
                sess.query(sql)
        for table, rows in spec["inserts"]:
            sess.query("INSERT INTO %s FORMAT JSONEachRow\n%s" % (table, "\n".join(rows)))
        for sql in spec.get("statements", []):
            sess.query(sql)
        agreed = 0
        empty = 0
        for query in spec["queries"]:
            sql, rows_expected = (query, True) if isinstance(query, str) else query
            old = server(spec["clickhouse"], sql + " FORMAT TabSeparated").splitlines()
            try:
                new = str(sess.query(sql, "TabSeparated")).splitlines()
            except Exception as e:
                print(f"chdb refused:\n{sql}\n{e}", file=sys.stderr)
                sys.exit(1)
            if len(old) != len(new):
                print(f"{len(old)} rows on the server, {len(new)} on chdb:\n{sql}", file=sys.stderr)
                sys.exit(1)
            for i, (a, b) in enumerate(zip(old, new)):
                ca, cb = a.split("\t"), b.split("\t")
                if len(ca) != len(cb) or not all(same(x, y) for x, y in zip(ca, cb)):
                    print(f"row {i} differs:\n  server: {a}\n  chdb:   {b}\n{sql}", file=sys.stderr)
                    sys.exit(1)
            if not old:
                if rows_expected:
                    print(f"no rows on either engine, where rows are expected:\n{sql}", file=sys.stderr)
                    sys.exit(1)
                empty += 1
            agreed += 1
        print(f"{agreed} queries agree ({empty} with no rows, where none may be)")


if __name__ == "__main__":
    main()
