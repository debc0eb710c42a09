"""`ptpulse build`: dbt build into a new analytics file beside the served one, then serve it atomically.

One module per job: `orchestrate` (the steps below, `build()`), `app_state` (step 2), `dbt_runner` (step 3),
`finish` (step 4: build log, view check; staging views), `incremental` (full or incremental, the state file), `serving` (steps 0 and 6: layout, swap, cleanup),
`dbt_plugin` (the pseudonym UDF that dbt_project/profiles.yml loads). Callers import the module they need, e.g.
`from ptpulse.build.orchestrate import build`.

Steps (docs/architecture.md, "The three stores"):

0. under the pipeline lock: an installation with plain served files is adopted into the build-folder layout
   (`adopt_served_files`), and build folders abandoned by killed or failed builds are removed
   (`remove_abandoned_builds`; never the served one);
1. a new file `build/<build_id>/analytics.duckdb` (same file name as the served one, so the catalog name
   that dbt writes into view definitions stays valid after the rename): empty for a full build, holding the served
   file's incremental marts for an incremental one; the build state file `build_state.duckdb` (dbt's staging
   and intermediate tables, never served) is flagged (`meta.build_in_progress`) and written in place (emptied
   first when full);
2. app state: `app.sqlite` is copied with SQLite's backup API (the app never meets a lock) and its
   `actions` table is written into the new file as `app_state.actions` (empty and typed when there is no
   app database yet), so dbt reads it as a source; the build id goes beside it as `app_state.build`;
3. `dbt build` in-process (raw.duckdb attached READ-ONLY as `rawdb`, the state file as `ptpulse_state`), the new
   file seen through the stable path `build/dbt/current/<name>` so dbt's partial parsing is reused from build to
   build;
4. only when every error-severity test passed: `meta.builds`
   (history carried forward from the served file), the `before_swap` hook (ML scoring writes schema `ml`),
   a check that every view left in the file can be queried, checkpoint and close;
5. the de-identified twin `analytics_deid.duckdb` is written beside the new file (ptpulse/core/deid.py: the new
   file attached READ_ONLY, one table per kept table with only kept columns) and verified (no PHI or
   free-text column, no excluded table, no view; otherwise the build fails); an incremental build starts it from
   the served, verified twin and replaces only the rows that changed (`analytics_deid.verified.json` marks a
   verified twin, build/serving.py);
6. ONE atomic rename serves both: a new symlink `build/served -> <build_id>` replaces the old one, and the
   stable paths `$PTPULSE_HOME/analytics.duckdb` / `analytics_deid.duckdb` are fixed symlinks into
   `build/served/`, so both served files come from the same build at every instant, crash or not. The
   previous build's folder is then removed (readers holding its files keep their snapshot);
7. the state file records the served build's state and its flag is dropped: a crash or failure at any step
   before this leaves the flag, and the next build is full (ptpulse/build/incremental.py).

On any failure both served files are untouched and `BuildResult.message` names the failed model or test.
"""
