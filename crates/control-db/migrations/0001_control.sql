-- floopy-gateway control database, SPEC section 2.
-- Applied at start (floopy-control-db's migrate.rs), in version order,
-- each file once, under an advisory lock so replicas starting together do
-- not race.

CREATE TYPE floopy_plan AS ENUM ('free', 'starter', 'pro', 'enterprise');
CREATE TYPE floopy_environment AS ENUM ('development', 'staging', 'production', 'other');
CREATE TYPE floopy_org_role AS ENUM ('owner', 'admin', 'manager', 'member');
CREATE TYPE floopy_project_role AS ENUM ('owner', 'admin', 'member');

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CONSTRAINT organizations_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    plan        floopy_plan NOT NULL DEFAULT 'free',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organizations_id_not_zero CHECK (id <> '00000000-0000-0000-0000-000000000000')
);

-- Identity is (org_id, id); the zero UUID is the org's Default project, so
-- the primary key allows exactly one Default project per org.
CREATE TABLE projects (
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    name        text NOT NULL CONSTRAINT projects_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    slug        text NOT NULL
        CONSTRAINT projects_slug_format CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND char_length(slug) <= 63),
    description text CONSTRAINT projects_description_length CHECK (char_length(description) <= 500),
    color       text CONSTRAINT projects_color_format CHECK (color ~ '^#[0-9a-fA-F]{6}$'),
    icon        text CONSTRAINT projects_icon_length CHECK (char_length(icon) BETWEEN 1 AND 32),
    archived    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CONSTRAINT projects_slug_unique_in_org UNIQUE (org_id, slug),
    CONSTRAINT projects_default_not_archived
        CHECK (NOT (id = '00000000-0000-0000-0000-000000000000' AND archived))
);

-- Every org gets its Default project when it is created.
CREATE FUNCTION floopy_create_default_project() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO projects (org_id, id, name, slug)
    VALUES (NEW.id, '00000000-0000-0000-0000-000000000000', 'Default', 'default');
    RETURN NEW;
END $$;
CREATE TRIGGER organizations_default_project AFTER INSERT ON organizations
    FOR EACH ROW EXECUTE FUNCTION floopy_create_default_project();

-- The Default project cannot be deleted (except with its org); deleting a
-- project revokes the keys locked to it.
CREATE FUNCTION floopy_project_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id = '00000000-0000-0000-0000-000000000000'
       AND EXISTS (SELECT 1 FROM organizations WHERE id = OLD.org_id) THEN
        RAISE EXCEPTION 'the Default project of organization % cannot be deleted', OLD.org_id
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE api_keys SET revoked_at = now()
     WHERE org_id = OLD.org_id AND project_id = OLD.id AND revoked_at IS NULL;
    RETURN OLD;
END $$;
CREATE TRIGGER projects_delete BEFORE DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION floopy_project_delete();

-- The plan's project quota, Default included.
CREATE FUNCTION floopy_project_quota() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    org_plan floopy_plan;
    quota int;
    used int;
BEGIN
    SELECT plan INTO org_plan FROM organizations WHERE id = NEW.org_id FOR UPDATE;
    quota := CASE org_plan WHEN 'free' THEN 1 WHEN 'starter' THEN 3 WHEN 'pro' THEN 10 ELSE NULL END;
    IF quota IS NOT NULL THEN
        SELECT count(*) INTO used FROM projects WHERE org_id = NEW.org_id;
        IF used >= quota THEN
            RAISE EXCEPTION 'organization % on plan % already has % of % projects', NEW.org_id, org_plan, used, quota
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER projects_quota BEFORE INSERT ON projects
    FOR EACH ROW EXECUTE FUNCTION floopy_project_quota();

CREATE TABLE api_keys (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                text NOT NULL CONSTRAINT api_keys_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    -- SHA-256 of the full key string; the secret itself is never stored.
    key_hash            bytea NOT NULL CONSTRAINT api_keys_hash_length CHECK (octet_length(key_hash) = 32),
    environment         floopy_environment,
    project_id          uuid,
    default_project_id  uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz,
    CONSTRAINT api_keys_hash_unique UNIQUE (key_hash),
    CONSTRAINT api_keys_project FOREIGN KEY (org_id, project_id)
        REFERENCES projects (org_id, id) ON DELETE SET NULL (project_id),
    CONSTRAINT api_keys_default_project FOREIGN KEY (org_id, default_project_id)
        REFERENCES projects (org_id, id) ON DELETE SET NULL (default_project_id)
);

CREATE TABLE environment_limits (
    org_id                  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    environment             floopy_environment NOT NULL,
    rpm                     integer CONSTRAINT environment_limits_rpm_positive CHECK (rpm > 0),
    monthly_cost_micro_usd  bigint CONSTRAINT environment_limits_cost_not_negative CHECK (monthly_cost_micro_usd >= 0),
    PRIMARY KEY (org_id, environment)
);

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    email       text NOT NULL CONSTRAINT users_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    name        text CONSTRAINT users_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_unique UNIQUE (email)
);

CREATE TABLE org_members (
    org_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role     floopy_org_role NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE project_members (
    org_id      uuid NOT NULL,
    project_id  uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        floopy_project_role NOT NULL,
    PRIMARY KEY (org_id, project_id, user_id),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, user_id) REFERENCES org_members (org_id, user_id) ON DELETE CASCADE
);

-- Budgets and alerts: org-wide (project_id NULL) or scoped to one project.
CREATE TABLE budgets (
    id                      uuid PRIMARY KEY,
    org_id                  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id              uuid,
    monthly_limit_micro_usd bigint NOT NULL CONSTRAINT budgets_limit_not_negative CHECK (monthly_limit_micro_usd >= 0),
    auto_revoke             boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE
);

CREATE TABLE alerts (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id          uuid,
    threshold_micro_usd bigint NOT NULL CONSTRAINT alerts_threshold_not_negative CHECK (threshold_micro_usd >= 0),
    target              text NOT NULL CONSTRAINT alerts_target_length CHECK (char_length(target) BETWEEN 1 AND 500),
    created_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE
);

-- Change propagation: every change to what the request path reads bumps one
-- version and notifies `floopy_control`. Gateways rebuild on the
-- notification and, as a safety net, when a poll sees a newer version.
CREATE TABLE control_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint NOT NULL
);
INSERT INTO control_version VALUES (true, 1);

CREATE FUNCTION floopy_control_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE control_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('floopy_control', v::text);
    RETURN NULL;
END $$;

CREATE TRIGGER organizations_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON organizations
    FOR EACH STATEMENT EXECUTE FUNCTION floopy_control_changed();
CREATE TRIGGER projects_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION floopy_control_changed();
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION floopy_control_changed();
CREATE TRIGGER environment_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON environment_limits
    FOR EACH STATEMENT EXECUTE FUNCTION floopy_control_changed();
