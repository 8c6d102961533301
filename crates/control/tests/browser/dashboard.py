"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

Started by `crates/control/tests/dashboard.rs`, which runs floopy-control
(with ClickHouse), a gateway (direct ClickHouse sink) and the fake provider,
and passes their addresses in the environment:

  CONTROL_URL, GATEWAY_CHAT_URL, DATABASE_URL, OWNER_EMAIL, OWNER_PASSWORD,
  SHOTS_DIR (every step saves a screenshot there), CHROMIUM (the binary).

Each step asserts what a person would check on the page; a failed step
raises, the exit status is not 0, and the Rust test fails with this output.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

CONTROL = os.environ["CONTROL_URL"].rstrip("/")
CHAT = os.environ["GATEWAY_CHAT_URL"]
DB = os.environ["DATABASE_URL"]
OWNER = os.environ["OWNER_EMAIL"]
PASSWORD = os.environ["OWNER_PASSWORD"]
SHOTS = os.environ["SHOTS_DIR"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# The gateway's price of gpt-4o in the test configuration: 2.50 USD per
# million prompt tokens, 10.00 per million completion tokens, i.e. micro-USD
# per token 2.5 and 10.
PROMPT, COMPLETION = 1000, 200
COST_PER_REQUEST = PROMPT * 25 // 10 + COMPLETION * 10  # 4,500 micro-USD
REQUESTS = 12

step_number = 0
errors = []
# Every page opened, for a screenshot of each when a step fails.
opened = []


def step(page, name):
    """A screenshot of the page as the step left it."""
    global step_number
    step_number += 1
    path = os.path.join(SHOTS, f"{step_number:02d}-{name}.png")
    page.screenshot(path=path, full_page=True)
    print(f"step {step_number:02d} {name}: ok ({path})", flush=True)


def usd(micro):
    """The page's format of micro-USD (dom.js `usd`)."""
    dollars = micro / 1e6
    digits = 2 if abs(dollars) >= 100 else 4 if abs(dollars) >= 1 else 6
    text = f"{dollars:,.{digits}f}"
    # At least two decimals, trailing zeros beyond them dropped.
    whole, frac = text.split(".")
    frac = frac.rstrip("0")
    frac = frac + "0" * (2 - len(frac)) if len(frac) < 2 else frac
    return f"${whole}.{frac}"


def psql(sql):
    out = subprocess.run(["psql", DB, "-tA", "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def gateway(key, body, headers=None, path=None):
    """One request to the gateway: (status, response headers, JSON body)."""
    url = CHAT if path is None else CHAT.replace("/v1/chat/completions", path)
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("authorization", f"Bearer {key}")
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


def chat(key, i):
    return gateway(
        key,
        {"model": "gpt-4o", "messages": [{"role": "user", "content": f"hello {i}"}]},
        {
            "x-fake-prompt-tokens": str(PROMPT),
            "x-fake-completion-tokens": str(COMPLETION),
            "floopy-session-id": f"conversation-{i % 3}",
            "floopy-user-id": f"user-{i % 2}",
        },
    )


def eventually(check, what, timeout=30.0):
    """Retries `check` (which returns a truthy value when done) until timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except AssertionError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s ({last})")


def sign_in(page, email, password):
    page.goto(f"{CONTROL}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def nav(page, name):
    page.get_by_role("navigation", name="Pages").get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(name.replace("&", "&")))


def choose_project(page, name):
    page.locator("#project-switch").select_option(label=name)
    page.wait_for_function(f"document.querySelector('#project-switch').selectedOptions[0].text.includes({json.dumps(name)})")


def current_project_id(page):
    m = re.search(r"project=([0-9a-f-]{36})", page.url)
    assert m, f"no project in {page.url}"
    return m.group(1)


def no_stray_text(page, where):
    """No child of the page written out as text by mistake: a list of
    elements ("[object HTMLDivElement]") or a null given to the DOM's own
    Element.append."""
    expect(page.locator(".state.loading")).to_have_count(0)
    text = page.locator("main").inner_text()
    assert "[object" not in text, f"{where}: {text!r}"
    assert not re.search(r"\b(null|undefined)\b", text), f"{where}: {text!r}"


def boxes_apart(a, b):
    """Whether two bounding boxes do not overlap."""
    return a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"] or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"]


def main():
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        owner_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = owner_ctx.new_page()
        opened.append(page)
        page.set_default_timeout(15000)
        expect.set_options(timeout=15000)
        page.on("pageerror", lambda e: errors.append(f"owner page: {e}"))

        # Log in: a wrong password is refused on the form, then the right one.
        page.goto(f"{CONTROL}/")
        page.get_by_label("Email").fill(OWNER)
        page.get_by_label("Password").fill("not the password at all")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert").filter(has_text="wrong")).to_be_visible()
        step(page, "login-refused")
        sign_in(page, OWNER, PASSWORD)
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        # The pages add children through dom.js's append (arrays flattened,
        # nulls left out), never the DOM's own, which writes them as text.
        for script in ["app.js", "state.js", "pages.js", "manage.js"]:
            source = page.request.get(f"{CONTROL}/assets/{script}").text()
            assert ".append(" not in source, f"{script} calls Element.append: use append(el, ...) of dom.js"
        step(page, "signed-in")

        # A reload keeps the session (and its CSRF token: a change works).
        page.reload()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()

        # Projects > New project: a bad slug is refused as it is typed; a
        # slug already used is refused by the server, on the field.
        nav(page, "Projects")
        expect(page.get_by_text("1 of 3 projects on the starter plan.")).to_be_visible()
        page.get_by_role("button", name="New project").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name", exact=True).fill("Support Bot")
        expect(dialog.get_by_label("Slug")).to_have_value("support-bot")
        dialog.get_by_label("Slug").fill("Support_Bot")
        slug_error = dialog.locator(".field.invalid .field-error")
        expect(slug_error).to_contain_text("Lowercase letters and digits")
        expect(dialog.get_by_label("Slug")).to_have_attribute("aria-invalid", "true")
        expect(dialog.get_by_role("button", name="Create project")).to_be_disabled()
        step(page, "new-project-bad-slug")
        dialog.get_by_label("Slug").fill("default")
        dialog.get_by_role("button", name="Create project").click()
        expect(slug_error).to_contain_text("already used by another project")
        step(page, "new-project-slug-taken")
        dialog.get_by_label("Slug").fill("support-bot")
        dialog.get_by_label("Color").fill("#0891b2")
        dialog.get_by_label("Icon").select_option("bot")
        dialog.get_by_role("button", name="Create project").click()
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(page.get_by_role("cell", name="support-bot")).to_be_visible()
        page.get_by_role("button", name="New project").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name", exact=True).fill("Research")
        dialog.get_by_role("button", name="Create project").click()
        expect(page.get_by_role("cell", name="research", exact=True)).to_be_visible()
        # The starter plan's three projects: the button is disabled.
        expect(page.get_by_text("3 of 3 projects on the starter plan")).to_be_visible()
        expect(page.get_by_role("button", name="New project")).to_be_disabled()
        no_stray_text(page, "the owner's projects page")
        step(page, "projects-at-quota")

        # API keys: a production key locked to Support Bot; its secret is
        # shown once, with a copy button, and never again.
        nav(page, "API keys")
        page.get_by_role("button", name="New API key").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name").fill("support-prod")
        dialog.get_by_label("Environment").select_option("production")
        dialog.get_by_label("Lock to project").select_option(label="Support Bot")
        dialog.get_by_role("button", name="Create key").click()
        secret_input = page.locator("#secret-value")
        expect(secret_input).to_be_visible()
        expect(page.get_by_text("This is the only time the secret is shown")).to_be_visible()
        expect(page.get_by_role("button", name="Copy")).to_be_visible()
        key = secret_input.input_value()
        assert key.startswith("fpk_") and len(key) > 20, key
        step(page, "key-secret-shown-once")
        page.get_by_role("button", name="Done").click()
        row = page.get_by_role("row").filter(has_text="support-prod")
        expect(row).to_contain_text("production")
        expect(row).to_contain_text("Support Bot")
        expect(row).to_contain_text(key[:12])
        assert key not in page.content(), "the secret is still on the page"
        page.reload()
        expect(page.get_by_role("row").filter(has_text="support-prod")).to_be_visible()
        assert key not in page.content(), "the secret is shown again"
        step(page, "keys")

        # Requests through the real gateway with that key.
        request_ids = []

        def send_all():
            while len(request_ids) < REQUESTS:
                status, headers, body = chat(key, len(request_ids))
                if status != 200:
                    return False
                request_ids.append(headers["floopy-request-id"])
            return True

        eventually(send_all, "the gateway serves the new key", 10)
        status, _, body = gateway(key, {"request_id": request_ids[0], "score": 0.75, "comment": "helpful"}, path="/v1/feedback")
        assert status == 200, body
        # A second scored request, made within the same minute as the first:
        # the two rows of Evaluations > Recent scores must still differ.
        status, _, body = gateway(key, {"request_id": request_ids[1], "score": 0.75}, path="/v1/feedback")
        assert status == 200, body
        expected = REQUESTS * COST_PER_REQUEST
        nav(page, "Overview")
        choose_project(page, "Support Bot")
        support = current_project_id(page)
        # The gateway's enforced spend for the project equals the expected cost.
        eventually(
            lambda: int(psql(f"SELECT COALESCE(sum(settled_micro_usd), 0) FROM replica_project_usage WHERE project_id = '{support}'")) == expected,
            f"the gateways' settled spend of Support Bot is {expected}",
        )

        # The requests list: every call to a model (the two feedback posts
        # are requests too, listed with the Kind filter), then filtered by
        # model, each at its cost.
        def requests_listed():
            nav(page, "Requests")
            rows = page.locator("main table tbody tr")
            expect(rows.first).to_be_visible()
            assert rows.count() == REQUESTS, f"{rows.count()} rows"
            return True

        eventually(requests_listed, "the requests list shows every call to a model")

        def scores_listed():
            page.locator("main details.card").first.evaluate("d => { d.open = true; }")
            page.locator("select[name=kind]").select_option("feedback")
            page.get_by_role("button", name="Apply").click()
            rows = page.locator("main table tbody tr")
            expect(rows.first).to_be_visible()
            assert rows.count() == 2, f"{rows.count()} score rows"
            assert "/v1/feedback" in rows.first.inner_text(), rows.first.inner_text()
            return True

        eventually(scores_listed, "the Kind filter lists the two scores")
        step(page, "requests-kind-feedback")
        nav(page, "Requests")
        page.get_by_text("Filters").click()
        page.get_by_label("Model").fill("gpt-4o")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile("model=gpt-4o"))
        expect(page.locator("main table tbody tr")).to_have_count(REQUESTS)
        cells = page.locator("main table tbody tr td:nth-child(7)").all_inner_texts()
        assert cells == [usd(COST_PER_REQUEST)] * REQUESTS, cells
        step(page, "requests")
        # A request's detail, with its feedback.
        page.get_by_role("row").filter(has_text="Support Bot").last.get_by_role("button").click()
        detail = page.get_by_role("dialog")
        expect(detail).to_contain_text(request_ids[0])
        expect(detail).to_contain_text("Score 0.75")
        expect(detail).to_contain_text("helpful")
        # Its key by name and prefix, as the key list shows it, not its id;
        # its path and what it was for.
        expect(detail).to_contain_text(f"support-prod ({key[:12]}…)")
        expect(detail).to_contain_text("/v1/chat/completions")
        expect(detail.locator("dt", has_text="Kind").locator("xpath=following-sibling::dd[1]")).to_have_text("llm")
        step(page, "request-detail")
        detail.get_by_role("button", name="Close").click()

        # The widgets: cost per million tokens is cost / tokens.
        nav(page, "Overview")
        per_mtok = expected / (REQUESTS * (PROMPT + COMPLETION))  # USD per M tokens
        widget = page.get_by_role("region", name="Cost per million tokens")
        eventually(lambda: f"${per_mtok:.2f}" in widget.inner_text(), "the cost per million tokens widget")
        env = page.get_by_role("region", name="Cost by environment")
        expect(env).to_contain_text("production")
        expect(page.get_by_role("region", name="Feedback score")).to_contain_text("0.75")
        step(page, "overview-support-bot")
        support_widget = widget.inner_text()

        # Another project: the numbers change.
        choose_project(page, "Research")
        widget = page.get_by_role("region", name="Cost per million tokens")
        expect(widget.locator(".value")).to_have_text("–")
        assert widget.inner_text() != support_widget
        step(page, "overview-research")

        # All projects: the breakdown table, with Support Bot at its cost.
        choose_project(page, "All Projects")
        row = page.get_by_role("row").filter(has_text="Support Bot")
        eventually(lambda: usd(expected) in row.inner_text(), "the all-projects table shows Support Bot's cost")
        expect(row).to_contain_text("100.0%")
        page.get_by_role("button", name="Requests", exact=True).click()
        expect(page.locator("th[aria-sort='descending']")).to_have_text(re.compile("Requests"))
        step(page, "overview-all-projects")

        for name in ["Sessions", "Users", "Cache", "Evaluations"]:
            nav(page, name)
            expect(page.locator(".state.loading")).to_have_count(0)
            expect(page.locator(".state.error")).to_have_count(0)
        nav(page, "Sessions")
        expect(page.get_by_role("link", name="conversation-1")).to_be_visible()
        nav(page, "Evaluations")
        expect(page.get_by_role("region", name="Average score")).to_contain_text("0.75")

        # Recent scores: each request's shortened id tells it from the
        # other (UUID v7 ids of the same minute share their first eight
        # characters), the whole id in its title.
        def recent_scores():
            nav(page, "Evaluations")
            links = page.locator("main table").last.locator("tbody tr td:nth-child(2) a")
            expect(links.first).to_be_visible(timeout=2000)
            assert links.count() == 2, f"{links.count()} recent scores"
            return True

        eventually(recent_scores, "both scores are listed")
        links = page.locator("main table").last.locator("tbody tr td:nth-child(2) a")
        shown = links.all_inner_texts()
        assert len(set(shown)) == 2, f"the two requests read the same: {shown}"
        titles = [links.nth(i).get_attribute("title") for i in range(2)]
        assert sorted(titles) == sorted(request_ids[:2]), titles
        for text, title in zip(shown, titles):
            assert text.strip("…") in title, (text, title)
        step(page, "evaluations")

        # Members: invite a member, who joins Support Bot only.
        nav(page, "Members")
        expect(page.locator("#members-project")).to_be_visible()
        no_stray_text(page, "the owner's members page")
        page.get_by_role("button", name="Invite member").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Email").fill("mia@acme.test")
        dialog.get_by_label("Organization role").select_option("member")
        dialog.get_by_role("button", name="Create invitation").click()
        link = page.locator("#secret-value").input_value()
        assert "/#/accept?token=" in link, link
        step(page, "invitation-link")
        page.keyboard.press("Escape")
        # The invitation is listed as pending, with its role and expiry.
        invitations = page.get_by_role("region", name="Pending invitations")
        row = invitations.get_by_role("row").filter(has_text="mia@acme.test")
        expect(row).to_contain_text("member")
        expect(row).to_contain_text("UTC")
        no_stray_text(page, "the owner's members page with an invitation")
        # Another, revoked from the page after a confirmation: its link no
        # longer works.
        page.get_by_role("button", name="Invite member").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Email").fill("tom@acme.test")
        dialog.get_by_role("button", name="Create invitation").click()
        expect(page.locator("#secret-value")).to_have_value(re.compile("/#/accept[?]token="))
        page.keyboard.press("Escape")
        row = invitations.get_by_role("row").filter(has_text="tom@acme.test")
        row.get_by_role("button", name="Revoke").click()
        confirm = page.get_by_role("dialog")
        expect(confirm).to_contain_text("Revoke the invitation of tom@acme.test?")
        step(page, "invitation-revoke-confirm")
        confirm.get_by_role("button", name="Revoke invitation").click()
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(invitations.get_by_role("row").filter(has_text="tom@acme.test")).to_have_count(0)
        expect(invitations.get_by_role("row").filter(has_text="mia@acme.test")).to_be_visible()
        assert psql("SELECT revoked_at IS NOT NULL FROM invitations WHERE email = 'tom@acme.test'") == "t"
        step(page, "invitation-revoked")

        member_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        mpage = member_ctx.new_page()
        opened.append(mpage)
        mpage.set_default_timeout(15000)
        mpage.on("pageerror", lambda e: errors.append(f"member page: {e}"))
        mpage.goto(link)
        mpage.get_by_label("Your name").fill("Mia Member")
        mpage.get_by_label("Choose a password").fill("short")
        mpage.get_by_role("button", name="Join").click()
        expect(mpage.get_by_role("alert").filter(has_text="12 to 256")).to_be_visible()
        mpage.get_by_label("Choose a password").fill("mia's long enough password")
        mpage.get_by_role("button", name="Join").click()
        expect(mpage.get_by_text("You have joined")).to_be_visible()

        page.reload()
        expect(page.get_by_role("cell", name="mia@acme.test")).to_be_visible()
        # Accepted: no longer pending.
        expect(page.get_by_role("region", name="Pending invitations")).to_contain_text("No pending invitation.")
        page.locator("#members-project").select_option(label="Support Bot")
        expect(page.get_by_role("button", name="Add to project")).to_be_visible()
        page.get_by_label("Member", exact=True).select_option(label="Mia Member (mia@acme.test)")
        page.get_by_label("Role", exact=True).select_option("member")
        page.get_by_role("button", name="Add to project").click()
        expect(page.get_by_role("cell", name="mia@acme.test")).to_have_count(2)
        step(page, "members")
        # With Research chosen in the header, the picker still shows the
        # project it is set to.
        research_id = psql("SELECT id FROM projects WHERE slug = 'research'")
        choose_project(page, "Research")
        project_members = page.get_by_role("region", name="Project members")
        expect(page.locator("#members-project")).to_have_value(research_id)
        expect(project_members.get_by_role("cell", name="mia@acme.test")).to_have_count(0)
        page.locator("#members-project").select_option(label="Support Bot")
        expect(project_members.get_by_role("cell", name="mia@acme.test")).to_be_visible()
        expect(page.locator("#members-project")).to_have_value(support)
        expect(page.locator("#project-switch")).to_have_value(research_id)
        step(page, "members-picker-over-header")
        choose_project(page, "All Projects")

        # The member: no settings, no other project, no key creation.
        sign_in(mpage, "mia@acme.test", "mia's long enough password")
        sidebar = mpage.get_by_role("navigation", name="Pages")
        expect(sidebar.get_by_role("link", name="Overview")).to_be_visible()
        expect(sidebar.get_by_role("link", name="Settings")).to_have_count(0)
        options = mpage.locator("#project-switch option").all_inner_texts()
        assert options == ["All Projects", "Support Bot"], options
        nav(mpage, "API keys")
        expect(mpage.get_by_role("button", name="New API key")).to_have_count(0)
        expect(mpage.get_by_role("row").filter(has_text="support-prod")).to_be_visible()
        expect(mpage.get_by_role("button", name="Revoke")).to_have_count(0)
        nav(mpage, "Projects")
        expect(mpage.get_by_role("button", name="New project")).to_have_count(0)
        expect(mpage.get_by_role("cell", name="research", exact=True)).to_have_count(0)
        expect(mpage.get_by_role("button", name="Edit")).to_have_count(0)
        no_stray_text(mpage, "the member's projects page")
        step(mpage, "member-projects")
        nav(mpage, "Members")
        expect(mpage.get_by_role("cell", name="owner@acme.test").first).to_be_visible()
        expect(mpage.locator("#members-project")).to_be_visible()
        expect(mpage.get_by_role("region", name="Pending invitations")).to_have_count(0)
        expect(mpage.get_by_role("button", name="Invite member")).to_have_count(0)
        no_stray_text(mpage, "the member's members page")
        step(mpage, "member-members")
        # Settings by its address: not offered.
        mpage.goto(re.sub(r"#/[a-z-]+", "#/settings", mpage.url))
        expect(mpage.get_by_role("alert")).to_contain_text("only the organization's owners and admins")
        expect(mpage.get_by_label("Monthly cap in USD of production")).to_have_count(0)
        # Research by its address: the member sees only their project.
        research = psql("SELECT id FROM projects WHERE slug = 'research'")
        mpage.goto(f"{CONTROL}/#/overview?project={research}")
        # Said so, not shown as All Projects.
        expect(mpage.get_by_role("alert").filter(has_text="this project does not exist, or you may not see it")).to_be_visible()
        expect(mpage.locator("main")).not_to_contain_text("All Projects")
        expect(mpage.locator("main table")).to_have_count(0)
        expect(mpage.locator("#project-switch")).to_have_value("")
        step(mpage, "member-project-not-visible")
        nav(mpage, "Overview")
        row = mpage.get_by_role("row").filter(has_text="Support Bot")
        expect(row).to_contain_text(usd(expected))
        expect(mpage.get_by_role("row").filter(has_text="Research")).to_have_count(0)
        step(mpage, "member-overview")

        # Settings > Limits: this month's spend of every environment, capped
        # or not; then a production cap, with the spend against it.
        nav(page, "Settings")
        production = page.get_by_role("row").filter(has_text="production")
        expect(production).to_contain_text(f"{usd(expected)}, no cap")
        expect(page.get_by_role("row").filter(has_text="development")).to_contain_text("$0.00, no cap")
        page.get_by_label("Monthly cap in USD of production").fill("5")
        # Saved twice in a row: both messages are readable, one above the
        # other.
        production.get_by_role("button", name="Save").click()
        production.get_by_role("button", name="Save").click()
        saved = page.get_by_role("status").filter(has_text="Limits of production saved.")
        expect(saved).to_have_count(2)
        first, second = saved.nth(0).bounding_box(), saved.nth(1).bounding_box()
        assert first and second and boxes_apart(first, second), f"the messages overlap: {first} {second}"
        step(page, "two-messages")
        meter = page.get_by_role("meter")
        expect(meter).to_have_attribute("aria-label", f"{usd(expected)} of $5.00")
        # The saved cap reads back as an amount, not as the API's six
        # decimals.
        page.reload()
        expect(page.get_by_label("Monthly cap in USD of production")).to_have_value("5.00")
        expect(page.get_by_role("meter")).to_have_attribute("aria-label", f"{usd(expected)} of $5.00")
        step(page, "settings-limits")

        # A budget on Support Bot below what it has spent, revoking its keys.
        nav(page, "Budgets & alerts")
        page.get_by_role("button", name="New budget").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name").fill("support monthly")
        dialog.get_by_label("Amount (USD)").fill("0.05")
        dialog.get_by_label("Scope").select_option(label="Support Bot")
        dialog.get_by_label("On breach").select_option("alert_and_revoke")
        dialog.get_by_role("button", name="Create budget").click()
        expect(page.get_by_role("dialog")).to_have_count(0)

        # Within 3 s of the spend crossing it every gateway refuses the key
        # (here: of the budget being created below the spend).
        started = time.monotonic()
        eventually(lambda: chat(key, 99)[0] in (401, 403), "the gateway refuses the budget-revoked key", 10)
        print(f"refused {time.monotonic() - started:.1f} s after the budget was created", flush=True)

        def breached():
            page.reload()
            row = page.locator("main table").first.get_by_role("row").filter(has_text="support monthly")
            expect(row).to_contain_text("Breached", timeout=2000)
            expect(row).to_contain_text("Support Bot")
            alerts = page.locator("main table").last.locator("tbody tr")
            expect(alerts.first).to_contain_text("budget", timeout=2000)
            return alerts.count() >= 1

        eventually(breached, "the budget shows breached with its alert")
        expect(page.locator("main table").last).to_contain_text("budget support monthly at 100%")
        # The revocation is an alert of its own.
        expect(page.locator("main table").last).to_contain_text(re.compile(r"budget support monthly: \d+ keys? revoked"))
        step(page, "budget-breached")
        nav(page, "API keys")
        row = page.get_by_role("row").filter(has_text="support-prod")
        expect(row).to_contain_text("Revoked by budget support monthly")
        step(page, "key-revoked-by-budget")
        # Restoring while still over: refused, said plainly.
        row.get_by_role("button", name="Restore").click()
        expect(page.get_by_role("status").filter(has_text="still exceeded")).to_be_visible()
        # Raise the budget, restore the key: the gateway serves it again.
        nav(page, "Budgets & alerts")
        page.get_by_label("New amount of support monthly").fill("100")
        page.get_by_role("button", name="Set amount").click()
        expect(page.get_by_role("status").filter(has_text="Budget changed")).to_be_visible()
        expect(page.locator("main table").first.get_by_role("row").filter(has_text="support monthly")).to_contain_text("Within budget")
        nav(page, "API keys")
        page.get_by_role("row").filter(has_text="support-prod").get_by_role("button", name="Restore").click()
        expect(page.get_by_role("row").filter(has_text="support-prod")).to_contain_text("Active")
        eventually(lambda: chat(key, 100)[0] == 200, "the gateway serves the restored key", 10)
        step(page, "key-restored")

        # Lowered below the spend again in the same period: revoked again,
        # and announced again though its thresholds fired already.
        nav(page, "Budgets & alerts")
        # The first change's toast is gone first, so the one seen is this change's.
        expect(page.get_by_role("status").filter(has_text="Budget changed")).to_have_count(0, timeout=6000)
        page.get_by_label("New amount of support monthly").fill("0.05")
        page.get_by_role("button", name="Set amount").click()
        expect(page.get_by_role("status").filter(has_text="Budget changed")).to_be_visible()
        eventually(lambda: chat(key, 101)[0] in (401, 403), "the gateway refuses the key revoked a second time", 10)

        def announced_twice():
            page.reload()
            rows = page.locator("main table").last.locator("tbody tr").filter(has_text=re.compile(r"support monthly: \d+ keys? revoked"))
            expect(rows.first).to_be_visible(timeout=2000)
            return rows.count() == 2

        eventually(announced_twice, "both revocations are in the alert list")
        step(page, "budget-revoked-again")
        # Deleting the budget gives its key back, as its dialog says.
        page.locator("main table").first.get_by_role("row").filter(has_text="support monthly").get_by_role("button", name="Delete").click()
        confirm = page.get_by_role("dialog")
        expect(confirm).to_contain_text("Deleting it restores the key it revoked.")
        step(page, "budget-delete-restores")
        confirm.get_by_role("button", name="Delete budget").click()
        expect(page.get_by_role("dialog")).to_have_count(0)
        eventually(
            lambda: psql(f"SELECT count(*) FROM api_keys WHERE name = 'support-prod' AND revoked_at IS NULL") == "1",
            "the deleted budget's key is active again",
        )
        eventually(lambda: chat(key, 102)[0] == 200, "the gateway serves the key of the deleted budget", 10)

        # An alert rule below the spend, to a webhook nobody answers: it
        # fires, its secret is shown once, and the history shows the
        # delivery being retried.
        nav(page, "Budgets & alerts")
        page.get_by_role("button", name="New alert rule").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name").fill("support spend")
        dialog.get_by_label("Fires at (USD)").fill("0.01")
        dialog.get_by_label("Scope").select_option(label="Support Bot")
        dialog.get_by_label("Webhook URL").fill("http://127.0.0.1:9/hook")
        dialog.get_by_role("button", name="Create rule").click()
        expect(page.locator("#secret-value")).to_have_value(re.compile(".{16,}"))
        page.keyboard.press("Escape")
        expect(page.get_by_role("cell", name="support spend")).to_be_visible()

        def rule_alert():
            page.reload()
            row = page.locator("main table").last.get_by_role("row").filter(has_text="alert rule")
            expect(row).to_contain_text("attempt", timeout=2000)
            return True

        eventually(rule_alert, "the rule's alert is listed with its delivery attempts")
        step(page, "alert-rule")

        # Sign out: the session ends.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto(f"{CONTROL}/#/keys")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

        browser.close()
    assert not errors, f"script errors on the page: {errors}"
    print("dashboard: every step passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test prints this output on failure
        print(f"FAILED at step {step_number + 1}: {e}", file=sys.stderr, flush=True)
        for i, page in enumerate(opened):
            try:
                page.screenshot(path=os.path.join(SHOTS, f"failed-{i}.png.fail"), full_page=True, type="png")
            except Exception:
                pass
        raise
