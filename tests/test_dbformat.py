"""The e-smith line format: exact round-trip of every Unicode value, and NethServer files read as they are."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotsync_events.configdb import ConfigDB, open_db
from hotsync_events.configdb.format import (FORMAT_MARK, UNKNOWN, KeyError_, Record, check_key, decode_record,
                                     encode_record, find_raw, is_legacy, parse_text, render_text)

#: a real NethServer configuration db written by the original Perl tool (how it was made: SOURCES.md beside it)
NETHSERVER_DB = Path(__file__).parent / "data" / "nethserver-db" / "configuration"

# the characters the format has to take care of, mixed into arbitrary Unicode
TRICKY = st.sampled_from(["|", "=", "\n", "\r", "#", "\\", " ", "\t", "\\n", "\\|", "\\\\", "||", "\x00",
                          "\x85", "\u2028", "é", "😀"])
TEXT = st.lists(st.one_of(st.text(max_size=6), TRICKY), max_size=8).map("".join)
PROP = TEXT.filter(bool)
KEY = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=12).filter(
    lambda k: not k.startswith("#") and not any(c in k for c in "=|\\") and k == k.strip())
PROPS = st.dictionaries(PROP, TEXT, max_size=6)


@given(rtype=TEXT, props=PROPS)
def test_record_round_trips(rtype, props):
    assert decode_record(encode_record(Record(rtype, props))) == Record(rtype, props)


@given(records=st.dictionaries(KEY, st.tuples(TEXT, PROPS), max_size=6))
def test_file_round_trips(records):
    raw = {k: encode_record(Record(t, p)) for k, (t, p) in records.items()}
    text = render_text(raw)
    back, legacy = parse_text(text)
    assert not legacy
    assert list(back) == sorted(records)
    assert {k: decode_record(v) for k, v in back.items()} == {k: Record(t, p) for k, (t, p) in records.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEY, rtype=TEXT, props=PROPS)
def test_values_round_trip_through_the_database_file(tmp_path, key, rtype, props):
    """Through ConfigDB: written to disk by one object, read back by a fresh one."""
    path = tmp_path / "db" / "roundtrip"
    path.unlink(missing_ok=True)  # one file per example
    ConfigDB(path).set(key, rtype, props)
    again = ConfigDB(path)
    assert again.keys() == [key]
    assert again.record(key) == Record(rtype, props)
    for prop, value in props.items():
        assert again.getprop(key, prop) == value


# lines made to trip a one-key search: keys that are prefixes of others, keys inside values, spaces around
# keys, comment lines that look like records, duplicates (the last wins), the format mark, CRs
LOOKUP_KEYS = ["a", "aa", "k1", "k", "#a", "a b", "x"]
LINE = st.one_of(
    st.tuples(st.sampled_from(["", " ", "\t", "  "]), st.sampled_from(LOOKUP_KEYS), st.sampled_from(["", " ", "\t"]),
              st.text(st.sampled_from("a=k1 #|\\x\r"), max_size=8)).map(lambda t: f"{t[0]}{t[1]}{t[2]}={t[3]}"),
    st.sampled_from(["", "#", "# a=1", "#a=2", FORMAT_MARK, "a", "=a", " = ", "aa a=3", "x=a=b", "\r", "k1 =\r"]),
)


@given(lines=st.lists(LINE, max_size=12), trailing_newline=st.booleans())
def test_one_key_search_agrees_with_the_index(lines, trailing_newline):
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    index, legacy = parse_text(text)
    assert is_legacy(text) == legacy
    for key in [*LOOKUP_KEYS, "nokey", "a=", " a", "a "]:
        found = find_raw(text, key)
        assert found is UNKNOWN or found == index.get(key), (key, found, index.get(key))
    assert find_raw(text, "k1") is not UNKNOWN


def test_reads_of_one_key_do_not_need_the_index(tmp_path):
    db = ConfigDB(tmp_path / "d")
    db.set("k", "t", {"a": "1"})
    db.set("kk", "t", {"a": "k=2"})
    db = ConfigDB(tmp_path / "d")
    assert db.getprop("k", "a") == "1" and db.getprop("kk", "a") == "k=2" and db.get("nokey") is None
    assert db._raw is None        # answered by searching the text
    assert db.keys() == ["k", "kk"]


@pytest.mark.parametrize("value", ["", " ", "  lead", "trail  ", "a|b", "a=b", "line1\nline2", "cr\rlf\r\n", "#x",
                                   "\\", "ends\\", "\\\\srv\\share", "\\n", "\\|", "|", "||", "\t", "ü€😀"])
def test_tricky_values(tmp_path, value):
    db = ConfigDB(tmp_path / "t")
    db.set("k", "t", {"p": value, value or "e": "x", "z": value})
    db = ConfigDB(tmp_path / "t")
    assert db.getprop("k", "p") == value
    assert db.getprop("k", "z") == value
    assert db.getprop("k", value or "e") == "x"


@pytest.mark.parametrize("key", ["", "a b", "a=b", "a|b", "a\\b", "#a", "a\nb", "a\tb", "a\x00"])
def test_bad_keys_are_refused(key):
    with pytest.raises(KeyError_) as exc:
        check_key(key)
    assert "allowed" in str(exc.value) or "a key is" in str(exc.value)


def test_our_files_carry_the_format_mark(tmp_path):
    db = ConfigDB(tmp_path / "x")
    db.set("k", "t", {"a": "1"})
    text = (tmp_path / "x").read_text()
    assert FORMAT_MARK in text.splitlines()
    assert text.splitlines()[-1] == "k=t|a|1"


# ---------------------------------------------------------------------------------------- NethServer files
def nethserver_records() -> dict[str, Record]:
    """The reference file, decoded by the rules of the Perl tool (nethserver.md 3.1), independently."""
    import re

    out = {}
    for line in NETHSERVER_DB.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        fields = [f.replace("\\n", "\n") for f in re.split(r"(?<!\\)\|", value)]
        out[key.strip()] = Record(fields[0], dict(zip(fields[1::2], fields[2::2])))
    return out


def test_nethserver_file_loads_as_it_is(root):
    target = root.db_dir / "configuration"
    target.parent.mkdir(parents=True)
    shutil.copyfile(NETHSERVER_DB, target)
    db = open_db("configuration", root)
    assert len(db.keys()) == 46
    assert db.get("MinUid") == "5000"
    assert db.record("MinUid") == Record("5000", {})
    assert db.get("fstab") == "configuration" and db.props("fstab") == {}
    assert db.getprop("OrganizationContact", "Company") == "Example Org"
    assert db.getprop("OrganizationContact", "CountryCode") == ""          # an empty value
    assert db.getprop("pki", "SubjectAltName") == ""                       # an empty value at the end of the line
    assert db.getprop("nsswitch", "bootparams") == "nisplus [NOTFOUND=return] files"   # '=' and spaces
    assert db.getprop("httpd", "SSLCipherSuite") == "HIGH:MEDIUM:!aNULL:!MD5:!SEED:!IDEA"
    assert db.getprop("rspamd", "SpamSubjectPrefixString") == "***SPAM***"
    assert db.getprop("sogod", "BackupTime") == "30 0"
    assert db.get("openvpn@host-to-net") == "service"
    assert db.props("hotsync") == {"MasterHost": "", "SlaveHost": "", "SlavePort": "273", "databases": "enabled",
                                   "role": "", "status": "enabled"}
    assert sum(len(db.props(k)) for k in db.keys()) == 396
    assert db.as_dict() == {k: {"type": r.type, "props": r.props} for k, r in nethserver_records().items()}
    assert target.read_bytes() == NETHSERVER_DB.read_bytes()     # reading never rewrites


def test_nethserver_file_survives_a_write_in_our_dialect(root):
    target = root.db_dir / "configuration"
    target.parent.mkdir(parents=True)
    shutil.copyfile(NETHSERVER_DB, target)
    before = nethserver_records()
    db = open_db("configuration", root)
    db.setprop("hotsync", {"role": "master", "SlaveHost": "10.0.0.2"})
    text = target.read_text()
    assert FORMAT_MARK in text.splitlines()
    after = ConfigDB(target)
    expected = {k: r.copy() for k, r in before.items()}
    expected["hotsync"].props.update(role="master", SlaveHost="10.0.0.2")
    assert {k: after.record(k) for k in after.keys()} == expected
    # and a second write in our dialect changes nothing else
    after.setprop("hotsync", {"role": "slave"})
    expected["hotsync"].props["role"] = "slave"
    assert {k: ConfigDB(target).record(k) for k in after.keys()} == expected


LEGACY = (
    "# DO NOT MODIFY THIS FILE.\n"
    "# updated: Mon Nov 23 16:55:07 2026\n"
    "share=ibay|Path|\\\\srv\\share|Note|a\\nb|Pipe|x\\|y|Empty||Last|\n"
    "plain=service|status|enabled\n"
)


def test_legacy_backslash_quirks_read_as_the_perl_tool_reads_them(tmp_path):
    path = tmp_path / "legacy"
    path.write_text(LEGACY)
    db = ConfigDB(path)
    assert db.getprop("share", "Path") == "\\\\srv\\share"      # other backslashes are literal
    assert db.getprop("share", "Note") == "a\nb"                 # the two characters \n are a newline
    assert db.getprop("share", "Pipe") == "x\\|y"                # \| is no separator and keeps its backslash
    assert db.getprop("share", "Empty") == "" and db.getprop("share", "Last") == ""


@pytest.mark.parametrize("change", ["other key", "same value", "the key itself"])
def test_legacy_backslashes_survive_the_conversion(tmp_path, change):
    path = tmp_path / "legacy"
    path.write_text(LEGACY)
    db = ConfigDB(path)
    want = {k: db.record(k) for k in db.keys()}
    if change == "other key":
        db.setprop("plain", {"status": "disabled"})
        want["plain"].props["status"] = "disabled"
    elif change == "same value":   # a write that changes nothing still converts the file
        db.setprop("share", {"Path": "\\\\srv\\share"})
        db.setprop("plain", {"x": "1"})
        want["plain"].props["x"] = "1"
    else:
        db.setprop("share", {"Note": "c"})
        want["share"].props["Note"] = "c"
    again = ConfigDB(path)
    assert FORMAT_MARK in path.read_text().splitlines()
    assert {k: again.record(k) for k in again.keys()} == want


def test_legacy_file_with_bytes_that_are_not_utf8_can_still_be_written(tmp_path):
    """A value in Latin-1 (an old hand edit) is kept byte for byte, and does not make the db unwritable."""
    path = tmp_path / "legacy"
    path.write_bytes(b"# header\nsite=configuration|Owner|Jos\xe9|x|1\n")
    db = ConfigDB(path)
    db.setprop("site", {"x": "2"})
    assert b"Owner|Jos\xe9|" in path.read_bytes()
    assert ConfigDB(path).getprop("site", "x") == "2"


# ------------------------------------------------------------------------------------------- to the letter
# The outputs of the original NethServer `db` (nethserver-lib 2.2.11) for the same inputs, recorded when it
# was run on random operation sequences and on the real configuration db beside this file.
def test_printjson_of_a_key_without_props_omits_props_as_the_original(root, run):
    run("db", "testdb", "set", "smb", "5000", check=True)
    cp = run("db", "testdb", "printjson", "smb")
    assert cp.returncode == 0 and cp.stdout == '{"name": "smb", "type": "5000"}\n'


def test_delprop_on_a_missing_key_exits_0_silently_as_the_original(root, run):
    run("db", "testdb", "set", "smb", "5000", check=True)
    cp = run("db", "testdb", "delprop", "nokey", "someprop")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")
    assert run("db", "testdb", "keys").stdout == "smb\n"        # and created nothing


def test_a_newline_the_original_stored_reads_back_as_a_newline(root, run):
    """The original writes a value's newline as the two characters backslash-n; it reads them back as a
    newline (getprop, show). So does this reader; its own format keeps escaping what the original cannot."""
    run("db", "testdb", "set", "k", "x", check=True)                  # the database directory exists
    (root.db_dir / "quirks").write_text("q0=service|p|line1\\nline2|z|last\n")
    assert run("db", "quirks", "getprop", "q0", "p").stdout == "line1\nline2\n"
    assert run("db", "quirks", "show", "q0").stdout == "q0=service\n    p=line1\nline2\n    z=last\n"
    cp = run("db", "quirks", "printjson", "q0")
    assert json.loads(cp.stdout)["props"]["p"] == "line1\nline2"
    # written again by this tool, the value is kept exactly (the file moves to its own dialect)
    run("db", "quirks", "setprop", "q0", "z", "again", check=True)
    assert run("db", "quirks", "getprop", "q0", "p").stdout == "line1\nline2\n"


def test_the_database_is_read_where_nethserver_keeps_it(root, run):
    """A NethServer host keeps its databases in /var/lib/nethserver/db: read (and written) there, as they are."""
    target = root.join("/var/lib/nethserver/db/configuration")
    target.parent.mkdir(parents=True)
    shutil.copyfile(NETHSERVER_DB, target)
    assert run("config", "getprop", "sysconfig", "ProductName").stdout == "NethServer\n"
    assert root.db_dir == target.parent
    run("config", "setprop", "hotsync", "role", "master", check=True)
    assert "hotsync=" in target.read_text() and not root.join("/var/lib/hotsync/db").exists()
