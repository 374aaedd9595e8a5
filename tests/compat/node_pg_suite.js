// node-postgres (pg@8) through the pooler.
//
// Usage: node node_pg_suite.js CHECK...
// Connection settings come from the PG* variables. Prints one JSON object:
// for each check, what it read back.

const pg = require("pg");

const TAG = process.env.COMPAT_TAG || "x";

function config() {
  return {
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT),
    user: process.env.PGUSER,
    password: process.env.PGPASSWORD,
    database: process.env.PGDATABASE,
    ssl: false,
    connectionTimeoutMillis: 20000,
  };
}

async function connect() {
  const client = new pg.Client(config());
  await client.connect();
  return client;
}

// Named queries: the same name on two connections for different texts,
// each used several times, in turn, and again inside a transaction.
async function checkNamed() {
  const a = await connect();
  const b = await connect();
  try {
    const doubled = [];
    const plus = [];
    for (let i = 0; i < 10; i++) {
      doubled.push((await a.query({ name: "q1", text: "SELECT $1::int * 2 AS v", values: [i] })).rows[0].v);
      plus.push((await b.query({ name: "q1", text: "SELECT $1::int + 1000 AS v", values: [i] })).rows[0].v);
    }
    await a.query("BEGIN");
    const inside = (await a.query({ name: "q1", text: "SELECT $1::int * 2 AS v", values: [21] })).rows[0].v;
    await a.query("COMMIT");
    const server = (
      await a.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'q1'")
    ).rows[0].n;
    return { doubled, plus, inside, server_prepared: server };
  } finally {
    await a.end();
    await b.end();
  }
}

// A pool of 10 and 50 concurrent parameterised queries (unnamed
// statements), each checking its own answer; then transactions on pooled
// clients.
async function checkPool() {
  const pool = new pg.Pool({ ...config(), max: 10 });
  try {
    const answers = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const r = await pool.query("SELECT $1::int * 3 AS v, pg_backend_pid() AS pid", [i]);
        return [r.rows[0].v === i * 3, r.rows[0].pid];
      }),
    );
    const size = pool.totalCount;
    const table = `node_pool_${TAG}`;
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.query(`CREATE TABLE ${table} (id int PRIMARY KEY, who text)`);
    await Promise.all(
      Array.from({ length: 10 }, async (_, n) => {
        const c = await pool.connect();
        try {
          await c.query("BEGIN");
          for (let k = 0; k < 5; k++) {
            await c.query(`INSERT INTO ${table} VALUES ($1, $2)`, [n * 5 + k, `client ${n}`]);
          }
          await c.query(n % 2 === 0 ? "COMMIT" : "ROLLBACK");
        } finally {
          c.release();
        }
      }),
    );
    const kept = (await pool.query(`SELECT count(*)::int AS n, count(DISTINCT who)::int AS w FROM ${table}`)).rows[0];
    let error = null;
    try {
      await pool.query("SELECT 1 / $1::int", [0]);
    } catch (e) {
      error = e.code;
    }
    return {
      right: answers.filter(([ok]) => ok).length,
      backends: new Set(answers.map(([, pid]) => pid)).size,
      size,
      kept: [kept.n, kept.w],
      error,
    };
  } finally {
    await pool.end();
  }
}

// Named queries on a pool: every pooled client prepares "pooled" itself.
async function checkPoolNamed() {
  const pool = new pg.Pool({ ...config(), max: 10 });
  try {
    const answers = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const r = await pool.query({ name: "pooled", text: "SELECT $1::int * 5 AS v", values: [i] });
        return r.rows[0].v === i * 5;
      }),
    );
    return { right: answers.filter((ok) => ok).length };
  } finally {
    await pool.end();
  }
}

const checks = { named: checkNamed, pool: checkPool, pool_named: checkPoolNamed };

async function main() {
  const result = {};
  for (const name of process.argv.slice(2)) {
    result[name] = await checks[name]();
  }
  console.log(JSON.stringify(result));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
