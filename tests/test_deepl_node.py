"""DeepL door regressions: deepl-node's form-encoded v3 glossary dictionaries, and billed characters = usage.

deepl-node (the DeepL SDK JavaScript tools use) sends v3 glossary dictionaries form-encoded
(``dictionaries[0].source_lang=…``). Before the fix, create failed with 400 "Parameter 'dictionaries' not
specified" and ``updateMultilingualGlossaryDictionary`` (PATCH) answered 200 while dropping the entries. And
``billed_characters`` counted tags while ``/v2/usage`` counted text only (``Hi <b>x</b>``: 11 billed, 4 counted).

The test set-up installs deepl-node with npm into ``.cache/npm`` (ignored by git), the way ``make`` installs the
Python packages; the deepl-node tests skip, with the reason, when node/npm are missing or the registry is
unreachable. The same bugs are also pinned with raw httpx requests and the Python ``deepl`` client.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.protocol_fixtures import engine, http, server, service, tiny, tm  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
NPM_DIR = ROOT / ".cache" / "npm"
DEEPL_NODE_VERSION = "1.28.0"
AUTH = {"Authorization": "DeepL-Auth-Key any-key:fx"}

SCRIPT = r"""
const deepl = require('deepl-node');
const [url] = process.argv.slice(2);
(async () => {
  const client = new deepl.DeepLClient('any-key:fx', {serverUrl: url, maxRetries: 0});
  const entries = (obj) => new deepl.GlossaryEntries({entries: obj});
  const out = {};
  const g = await client.createMultilingualGlossary('node glossary', [
    {sourceLangCode: 'en', targetLangCode: 'de', entries: entries({printer: 'Drucker'})},
    {sourceLangCode: 'en', targetLangCode: 'fr', entries: entries({printer: 'imprimante'})},
  ]);
  out.created = g.dictionaries.map((d) => [d.sourceLangCode, d.targetLangCode, d.entryCount]);
  const patched = await client.updateMultilingualGlossaryDictionary(g,
    {sourceLangCode: 'en', targetLangCode: 'de', entries: entries({paper: 'Papier'})});
  out.patched = patched.dictionaries.map((d) => [d.sourceLangCode, d.targetLangCode, d.entryCount]);
  out.de = (await client.getMultilingualGlossaryDictionaryEntries(g, 'en', 'de')).entries.entries();
  await client.replaceMultilingualGlossaryDictionary(g,
    {sourceLangCode: 'en', targetLangCode: 'fr', entries: entries({paper: 'papier'})});
  out.fr = (await client.getMultilingualGlossaryDictionaryEntries(g, 'en', 'fr')).entries.entries();
  out.renamed = (await client.updateMultilingualGlossaryName(g, 'renamed')).name;
  const before = (await client.getUsage()).character.count;
  const r = await client.translateText('Hi <b>x</b>', 'en', 'de', {tagHandling: 'xml', glossary: g});
  out.billed = r.billedCharacters;
  out.usage_delta = (await client.getUsage()).character.count - before;
  out.tags = r.text.split('<b>').length - 1;
  await client.deleteMultilingualGlossary(g);
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(2); });
"""


@pytest.fixture(scope="session")
def deepl_node() -> Path:
    """node_modules with deepl-node, installed once into .cache/npm; skip with the reason when impossible."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm are not installed: deepl-node cannot run")
    package = NPM_DIR / "node_modules" / "deepl-node" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != DEEPL_NODE_VERSION:
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run([npm, "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund",
                                   "--cache", str(NPM_DIR / "npm-cache"), f"deepl-node@{DEEPL_NODE_VERSION}"],
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install deepl-node timed out (registry unreachable?)")
        if done.returncode != 0 or not package.exists():
            pytest.skip(f"npm install deepl-node failed (registry unreachable?): {done.stderr.strip()[-300:]}")
    return NPM_DIR / "node_modules"


def test_deepl_node_v3_glossaries_and_billing(deepl_node, server, tmp_path):
    script = tmp_path / "deepl_node_client.js"
    script.write_text(SCRIPT)
    done = subprocess.run(["node", str(script), server.url], capture_output=True, text=True, timeout=120,
                          env={"NODE_PATH": str(deepl_node), "PATH": str(Path(shutil.which("node")).parent)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(out["created"]) == [["en", "de", 1], ["en", "fr", 1]]
    assert ["en", "de", 2] in out["patched"]               # PATCH merged, nothing dropped
    assert out["de"] == {"printer": "Drucker", "paper": "Papier"}
    assert out["fr"] == {"paper": "papier"}                # PUT replaced the dictionary
    assert out["renamed"] == "renamed"
    assert out["billed"] == 4 and out["usage_delta"] == 4  # "Hi x": tags not billed, and usage agrees
    assert out["tags"] == 1


def _form_dicts(**fields) -> dict:
    return {f"dictionaries[0].{k}": v for k, v in fields.items()}


def test_form_encoded_v3_dictionaries_create_and_patch(http):
    """deepl-node's exact request shape, by hand: failed with 400 / answered 200 losing entries before the fix."""
    r = http.post("/v3/glossaries", headers=AUTH, data={
        "name": "form", **_form_dicts(source_lang="en", target_lang="de", entries="printer\tDrucker",
                                      entries_format="tsv"),
        "dictionaries[1].source_lang": "en", "dictionaries[1].target_lang": "fr",
        "dictionaries[1].entries": "printer\timprimante", "dictionaries[1].entries_format": "tsv"})
    assert r.status_code == 201, r.text
    gid = r.json()["glossary_id"]
    assert sorted((d["target_lang"], d["entry_count"]) for d in r.json()["dictionaries"]) == [("de", 1), ("fr", 1)]
    r = http.patch(f"/v3/glossaries/{gid}", headers=AUTH, data=_form_dicts(
        source_lang="en", target_lang="de", entries="paper\tPapier", entries_format="tsv"))
    assert r.status_code == 200
    entries = http.get(f"/v3/glossaries/{gid}/entries", headers=AUTH,
                       params={"source_lang": "en", "target_lang": "de"}).json()
    assert set(entries["dictionaries"][0]["entries"].split("\n")) == {"printer\tDrucker", "paper\tPapier"}


@pytest.mark.parametrize("data", [
    _form_dicts(source_lang="en", target_lang="de"),                          # no entries
    {"dictionaries[0].source_lang": "en", "dictionaries[0].target_lang": "de",  # a typo in a field name
     "dictionaries[0].entrys": "a\tb"},
    {"dictionaries[1].source_lang": "en", "dictionaries[1].target_lang": "de",  # index 0 missing
     "dictionaries[1].entries": "a\tb", "dictionaries[1].entries_format": "tsv"},
    {"dictionaries": "en,de,a\tb"},                                            # not a list
    {"dictionaries[0][source_lang]": "en", "dictionaries[0][target_lang]": "de",  # another bracket style
     "dictionaries[0][entries]": "a\tb"},
    {},                                                                        # nothing to change
])
def test_unreadable_dictionaries_are_refused_never_200(http, data):
    gid = http.post("/v3/glossaries", headers=AUTH, json={"name": "g", "dictionaries": [
        {"source_lang": "en", "target_lang": "de", "entries": "printer\tDrucker", "entries_format": "tsv"}]}
                    ).json()["glossary_id"]
    r = http.patch(f"/v3/glossaries/{gid}", headers=AUTH, data=data)
    assert r.status_code == 400 and r.json()["message"]
    if data:
        assert http.post("/v3/glossaries", headers=AUTH, data={"name": "x", **data}).status_code == 400
    entries = http.get(f"/v3/glossaries/{gid}/entries", headers=AUTH,
                       params={"source_lang": "en", "target_lang": "de"}).json()
    assert entries["dictionaries"][0]["entries"] == "printer\tDrucker"  # untouched


def test_billed_characters_equal_usage_deepl_python(server):
    """DeepL bills the source text's characters, tags excluded: billed_characters and /v2/usage must agree."""
    import deepl

    tr = deepl.Translator("any-key:fx", server_url=server.url)
    before = tr.get_usage().character.count
    out = tr.translate_text(["Hi <b>x</b>", "Tom &amp; <x id=\"1\"/>Jerry"], source_lang="EN", target_lang="DE",
                            tag_handling="xml")
    assert [o.billed_characters for o in out] == [len("Hi x"), len("Tom & Jerry")]
    assert tr.get_usage().character.count - before == sum(o.billed_characters for o in out)
    plain = tr.translate_text("Hi <b>x</b>", source_lang="EN", target_lang="DE")  # no tag handling: all text
    assert plain.billed_characters == len("Hi <b>x</b>")


def test_open_mode_counts_usage_in_one_bucket(server):
    """Without configured keys, the string a client sends as its key is not an account: one shared count."""
    import deepl

    a = deepl.Translator("client-a", server_url=server.url)
    b = deepl.Translator("client-b", server_url=server.url)
    before = a.get_usage().character.count
    b.translate_text("twelve chars", source_lang="EN", target_lang="DE")
    assert a.get_usage().character.count == before + 12
    assert set(server.service.usage.all()) <= {""}
