-- floopy-control, SPEC section 7: users sign in (passwords as Argon2id
-- hashes, sessions, personal access tokens), every change is audited, and
-- failed logins are counted for throttling. Secrets are never stored: a
-- session, token or invitation is kept as the SHA-256 of its string.

ALTER TABLE users ADD COLUMN password_hash text;

-- Sessions of the dashboard: the cookie's value is the secret; its CSRF
-- token is sent back on every state-changing request.
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY CONSTRAINT sessions_hash_length CHECK (octet_length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Personal access tokens (`fpu_...`) for scripts.
CREATE TABLE access_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL CONSTRAINT access_tokens_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    token_hash  bytea NOT NULL CONSTRAINT access_tokens_hash_length CHECK (octet_length(token_hash) = 32),
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at  timestamptz,
    CONSTRAINT access_tokens_hash_unique UNIQUE (token_hash)
);
CREATE INDEX access_tokens_user ON access_tokens (user_id);

-- Failed logins, per account and per client address, for throttling.
CREATE TABLE login_failures (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL,
    client      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email ON login_failures (email, at);
CREATE INDEX login_failures_client ON login_failures (client, at);

-- Invitations: a one-time link an owner or admin creates (no mail server is
-- assumed); whoever opens it joins the org with the role, as the invited
-- email.
CREATE TABLE invitations (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email       text NOT NULL CONSTRAINT invitations_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    role        floopy_org_role NOT NULL,
    token_hash  bytea NOT NULL CONSTRAINT invitations_hash_length CHECK (octet_length(token_hash) = 32),
    invited_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    revoked_at  timestamptz,
    CONSTRAINT invitations_hash_unique UNIQUE (token_hash)
);
CREATE INDEX invitations_org ON invitations (org_id, id);

-- A key's recognisable prefix (`fpk_` and its next characters), shown in
-- listings instead of the secret. Keys made before it have none.
ALTER TABLE api_keys ADD COLUMN prefix text;

-- Every change made through the control plane: who, what, on which object,
-- before and after (never a secret).
CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    org_id      uuid REFERENCES organizations (id) ON DELETE CASCADE,
    actor_id    uuid,
    action      text NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL,
    before      jsonb,
    after       jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_org ON audit_log (org_id, at DESC, id DESC);

-- An org keeps at least one owner: removing or demoting its last owner is
-- refused, however many requests race.
CREATE FUNCTION floopy_keep_an_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.role = 'owner' AND (TG_OP = 'DELETE' OR NEW.role <> 'owner')
       AND EXISTS (SELECT 1 FROM organizations WHERE id = OLD.org_id) THEN
        PERFORM 1 FROM organizations WHERE id = OLD.org_id FOR UPDATE;
        IF NOT EXISTS (SELECT 1 FROM org_members
                        WHERE org_id = OLD.org_id AND role = 'owner' AND user_id <> OLD.user_id) THEN
            RAISE EXCEPTION 'organization % must keep at least one owner', OLD.org_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'org_members_last_owner';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER org_members_keep_an_owner BEFORE UPDATE OR DELETE ON org_members
    FOR EACH ROW EXECUTE FUNCTION floopy_keep_an_owner();

-- The quota and Default-project refusals name a constraint, so an API can
-- answer them precisely (403 plan_quota_exceeded, 409 on the Default).
CREATE OR REPLACE FUNCTION floopy_project_quota() RETURNS trigger LANGUAGE plpgsql AS $$
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
                USING ERRCODE = 'check_violation', CONSTRAINT = 'projects_plan_quota';
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION floopy_project_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id = '00000000-0000-0000-0000-000000000000'
       AND EXISTS (SELECT 1 FROM organizations WHERE id = OLD.org_id) THEN
        RAISE EXCEPTION 'the Default project of organization % cannot be deleted', OLD.org_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'projects_default_not_deleted';
    END IF;
    UPDATE api_keys SET revoked_at = now()
     WHERE org_id = OLD.org_id AND project_id = OLD.id AND revoked_at IS NULL;
    RETURN OLD;
END $$;
