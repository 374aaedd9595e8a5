// pgjdbc through the pooler.
//
// Usage: java JdbcSuite PROPERTIES CHECK...
// PROPERTIES are driver properties, "name=value" joined by commas
// ("prepareThreshold=1"). Connection settings come from the PG* variables;
// the ApplicationName is "compat-jdbc-" and COMPAT_TAG. Prints one JSON
// object: for each check, what it read back.

import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcSuite {
    static final String TAG = System.getenv().getOrDefault("COMPAT_TAG", "x");
    static String[] properties;

    static Connection connect() throws SQLException {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT") + "/"
                + System.getenv("PGDATABASE");
        Properties props = new Properties();
        props.setProperty("user", System.getenv("PGUSER"));
        props.setProperty("password", System.getenv("PGPASSWORD"));
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "20");
        props.setProperty("ApplicationName", "compat-jdbc-" + TAG);
        for (String property : properties) {
            String[] pair = property.split("=", 2);
            props.setProperty(pair[0], pair[1]);
        }
        return DriverManager.getConnection(url, props);
    }

    static String quote(String s) {
        return s == null ? "null" : "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static long scalar(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    static String text(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    static int one(PreparedStatement ps, int arg) throws SQLException {
        ps.setInt(1, arg);
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getInt(1);
        }
    }

    // Two connections each run their own statement ten times, in turn
    // (with prepareThreshold=1 both are server-prepared, as S_1, S_2, ...),
    // then once more inside a transaction.
    static String prepared() throws SQLException {
        try (Connection a = connect(); Connection b = connect();
                PreparedStatement doubled = a.prepareStatement("SELECT ?::int * 2");
                PreparedStatement plus = b.prepareStatement("SELECT ?::int + 1000")) {
            List<String> d = new ArrayList<>();
            List<String> p = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                d.add(Integer.toString(one(doubled, i)));
                p.add(Integer.toString(one(plus, i)));
            }
            a.setAutoCommit(false);
            int inside = one(doubled, 21);
            a.commit();
            a.setAutoCommit(true);
            long server = scalar(a, "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int * 2'");
            return "{\"doubled\": [" + String.join(", ", d) + "], \"plus\": [" + String.join(", ", p)
                    + "], \"inside\": " + inside + ", \"server_prepared\": " + server + "}";
        }
    }

    // A batch of 500 inserts in one transaction, read back; then a batch
    // that hits a duplicate key, rolled back.
    static String batch() throws SQLException {
        String table = "jdbc_batch_" + TAG;
        try (Connection c = connect()) {
            try (Statement st = c.createStatement()) {
                st.execute("DROP TABLE IF EXISTS " + table);
                st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, name text)");
            }
            c.setAutoCommit(false);
            int updated = 0;
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table + " VALUES (?, ?)")) {
                for (int i = 1; i <= 500; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "row " + i);
                    ps.addBatch();
                }
                for (int n : ps.executeBatch()) {
                    updated += n;
                }
            }
            c.commit();
            String failed = null;
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table + " VALUES (?, ?)")) {
                for (int i = 501; i <= 510; i++) {
                    ps.setInt(1, i == 505 ? 1 : i);
                    ps.setString(2, "second " + i);
                    ps.addBatch();
                }
                ps.executeBatch();
            } catch (BatchUpdateException e) {
                failed = e.getSQLState();
                c.rollback();
            }
            c.setAutoCommit(true);
            long count = scalar(c, "SELECT count(*) FROM " + table);
            long sum = scalar(c, "SELECT sum(id) FROM " + table);
            return "{\"updated\": " + updated + ", \"failed\": " + quote(failed) + ", \"count\": " + count
                    + ", \"sum\": " + sum + "}";
        }
    }

    // ApplicationName as the server sees it, in two transactions.
    static String appname() throws SQLException {
        try (Connection c = connect()) {
            String shown = text(c, "SHOW application_name");
            String activity = text(c, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()");
            return "{\"show\": " + quote(shown) + ", \"activity\": " + quote(activity) + "}";
        }
    }

    // Eight connections at once, each running its own server-prepared
    // statement 50 times with its own inputs: more clients than a
    // transaction pool's server connections. Returns how many results were
    // right (400 expected).
    static String concurrent() throws SQLException {
        java.util.concurrent.atomic.AtomicInteger right = new java.util.concurrent.atomic.AtomicInteger();
        List<Thread> threads = new ArrayList<>();
        List<Throwable> errors = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int t = 0; t < 8; t++) {
            final int me = t;
            Thread thread = new Thread(() -> {
                try (Connection c = connect();
                     PreparedStatement ps = c.prepareStatement("SELECT ?::int * 1000 + " + me)) {
                    for (int i = 0; i < 50; i++) {
                        if (one(ps, i) == i * 1000 + me) {
                            right.incrementAndGet();
                        }
                    }
                } catch (Throwable e) {
                    errors.add(e);
                }
            });
            threads.add(thread);
            thread.start();
        }
        for (Thread thread : threads) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
        }
        if (!errors.isEmpty()) {
            throw new RuntimeException(errors.get(0));
        }
        return Integer.toString(right.get());
    }

    public static void main(String[] args) throws SQLException {
        properties = args[0].split(",");
        List<String> parts = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String value;
            switch (args[i]) {
                case "prepared": value = prepared(); break;
                case "batch": value = batch(); break;
                case "appname": value = appname(); break;
                case "concurrent": value = concurrent(); break;
                default: throw new IllegalArgumentException(args[i]);
            }
            parts.add(quote(args[i]) + ": " + value);
        }
        System.out.println("{" + String.join(", ", parts) + "}");
    }
}
