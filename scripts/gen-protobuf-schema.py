#!/usr/bin/env python3
"""Regenerates apiserver/src/protobuf/schema.txt: the Kubernetes protobuf messages, as data.

kubectl sends most request bodies as `application/vnd.kubernetes.protobuf`. The API server
decodes them generically (apiserver/src/protobuf/) from this schema, so the data must say,
for each message, what upstream's generated Go code knows: field number, JSON name and type,
and how the field is written as JSON.

Two upstream sources are joined by (message, field number):

* `generated.proto` (go-to-protobuf's output): the messages, field numbers and types, and
  the `+protobuf.nullable=true` marker of list wrappers (`type Verbs []string`, whose JSON is
  a plain array);
* the Go types (`types.go` and friends): the struct tags. `json:"name,omitempty"` gives the
  JSON name (which is not always the proto name: `$ref`, `x-kubernetes-*`), whether a zero
  value is written, and `,inline` (an embedded struct whose fields appear in the parent's
  JSON object, as `Volume`'s `VolumeSource`); a `*T` Go type means the zero value is
  meaningful (`replicas: 0`).

This is generated interface data, not copied code. Usage (git dirs of the three upstream
repositories, at a release tag matching the served Kubernetes version):

    scripts/gen-protobuf-schema.py --ref v0.33.9 \\
        --api /path/to/kubernetes/api.git \\
        --apimachinery /path/to/kubernetes/apimachinery.git \\
        --apiextensions /path/to/kubernetes/apiextensions-apiserver.git \\
        > apiserver/src/protobuf/schema.txt

Output format (one item per line, `#` comments):

    package ALIAS PROTO_PACKAGE API_VERSION     API_VERSION is `-` for type-only packages
    message ALIAS.NAME [list]                   `list`: a wrapper whose JSON is its items
     NUM JSON_NAME TYPE [FLAGS]                 a field of the message above

TYPE is a scalar (`string`, `bytes`, `bool`, `int32`, `int64`, `uint32`, `uint64`, `double`,
`float`, ...), a message `ALIAS.NAME`, or `map<K,V>`. FLAGS: `r` repeated, `z` zero values
are written (a Go pointer, or a field without `omitempty`), `i` inline. A JSON name `-` is a
field Go never writes as JSON.
"""

import argparse
import re
import subprocess
import sys

# (alias, repository, directory, proto package, apiVersion). The served groups (see
# core/src/registry.rs), the groups of the bodies of served subresources (Scale, Eviction,
# TokenRequest; SelfSubjectAccessReview for `kubectl auth can-i`), and the type-only packages they use.
PACKAGES = [
    ("core", "api", "core/v1", "k8s.io.api.core.v1", "v1"),
    ("apps", "api", "apps/v1", "k8s.io.api.apps.v1", "apps/v1"),
    ("batch", "api", "batch/v1", "k8s.io.api.batch.v1", "batch/v1"),
    ("coordination", "api", "coordination/v1", "k8s.io.api.coordination.v1",
     "coordination.k8s.io/v1"),
    ("discovery", "api", "discovery/v1", "k8s.io.api.discovery.v1", "discovery.k8s.io/v1"),
    ("events", "api", "events/v1", "k8s.io.api.events.v1", "events.k8s.io/v1"),
    ("policy", "api", "policy/v1", "k8s.io.api.policy.v1", "policy/v1"),
    ("autoscalingv1", "api", "autoscaling/v1", "k8s.io.api.autoscaling.v1", "autoscaling/v1"),
    ("autoscalingv2", "api", "autoscaling/v2", "k8s.io.api.autoscaling.v2", "autoscaling/v2"),
    ("authentication", "api", "authentication/v1", "k8s.io.api.authentication.v1",
     "authentication.k8s.io/v1"),
    ("authorization", "api", "authorization/v1", "k8s.io.api.authorization.v1",
     "authorization.k8s.io/v1"),
    ("storage", "api", "storage/v1", "k8s.io.api.storage.v1", "storage.k8s.io/v1"),
    ("scheduling", "api", "scheduling/v1", "k8s.io.api.scheduling.v1", "scheduling.k8s.io/v1"),
    ("apiextensions", "apiextensions", "pkg/apis/apiextensions/v1",
     "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1", "apiextensions.k8s.io/v1"),
    ("meta", "apimachinery", "pkg/apis/meta/v1", "k8s.io.apimachinery.pkg.apis.meta.v1",
     "meta.k8s.io/v1"),
    ("runtime", "apimachinery", "pkg/runtime", "k8s.io.apimachinery.pkg.runtime", "-"),
    ("resource", "apimachinery", "pkg/api/resource", "k8s.io.apimachinery.pkg.api.resource",
     "-"),
    ("intstr", "apimachinery", "pkg/util/intstr", "k8s.io.apimachinery.pkg.util.intstr", "-"),
]

SCALARS = {
    "string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "double", "float",
}


def git(repo_dir, *args):
    return subprocess.run(
        ["git", "--git-dir", repo_dir, *args], check=True, capture_output=True, text=True
    ).stdout


def strip_block_comments(text):
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


FIELD_RE = re.compile(
    r"^\s*(optional|repeated|required)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;"
)


def parse_proto(text):
    """Messages of one generated.proto: name -> {list, fields: [(num, name, kind, type, key, value)]}."""
    messages = {}
    current = None
    comments = []
    for line in strip_block_comments(text).splitlines():
        s = line.strip()
        if s.startswith("//"):
            comments.append(s)
            continue
        m = re.match(r"^message\s+(\w+)\s*\{", s)
        if m:
            current = {"list": any("+protobuf.nullable=true" in c for c in comments),
                       "fields": []}
            messages[m.group(1)] = current
            comments = []
            continue
        if s == "}":
            current = None
        comments = []
        if current is None or not s:
            continue
        f = FIELD_RE.match(s)
        if not f:
            sys.exit(f"unparsed proto line: {s!r}")
        label, typ, key, value, name, num = f.groups()
        if key:
            current["fields"].append((int(num), name, "map", None, key, value))
        else:
            current["fields"].append((int(num), name, label or "optional", typ, None, None))
    return messages


TAG_RE = re.compile(r'(\w+):"([^"]*)"')


def parse_go_structs(text):
    """Struct fields with a protobuf tag: struct -> {num: (json name, omitempty, inline, pointer)}."""
    structs = {}
    current = None
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"^type\s+(\w+)\s+struct\s*\{", s)
        if m and not line.startswith((" ", "\t")):
            current = structs.setdefault(m.group(1), {})
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None or s.startswith("//") or "`" not in s:
            continue
        head, _, rest = s.partition("`")
        tags = dict(TAG_RE.findall(rest.rpartition("`")[0]))
        if "protobuf" not in tags:
            continue
        tokens = head.split()
        gotype = tokens[-1] if tokens else ""
        parts = tags["protobuf"].split(",")
        if len(parts) < 2 or not parts[1].isdigit():
            continue  # `protobuf:"-"`: not in the message
        num = int(parts[1])
        json_parts = tags.get("json", "").split(",")
        json_name = json_parts[0]
        opts = set(json_parts[1:])
        inline = "inline" in opts
        if not json_name and not inline:
            # No JSON name: Go's encoding/json uses the field name.
            json_name = tokens[0] if len(tokens) > 1 else gotype.split(".")[-1]
        current[num] = (json_name, "omitempty" in opts, inline, gotype.startswith("*"))
    return structs


def go_sources(repo_dir, ref, directory):
    names = git(repo_dir, "ls-tree", "--name-only", f"{ref}:{directory}").split()
    text = []
    for n in names:
        if not n.endswith(".go") or n.endswith("_test.go") or n.startswith("zz_generated"):
            continue
        if n == "generated.pb.go":
            continue
        text.append(git(repo_dir, "show", f"{ref}:{directory}/{n}"))
    return "\n".join(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--apimachinery", required=True)
    ap.add_argument("--apiextensions", required=True)
    args = ap.parse_args()
    repos = {"api": args.api, "apimachinery": args.apimachinery,
             "apiextensions": args.apiextensions}

    alias_of = {pkg: alias for alias, _, _, pkg, _ in PACKAGES}
    out = [
        "# Generated by scripts/gen-protobuf-schema.py from upstream's generated.proto and Go",
        f"# struct tags (kubernetes/api, apimachinery, apiextensions-apiserver {args.ref}).",
        "# Interface data, not code; do not edit by hand. Format: see the script.",
    ]
    for alias, _, _, pkg, api_version in PACKAGES:
        out.append(f"package {alias} {pkg} {api_version}")

    missing = []
    for alias, repo, directory, pkg, _ in PACKAGES:
        proto = git(repos[repo], "show", f"{args.ref}:{directory}/generated.proto")
        declared = re.search(r"^package\s+([\w.]+)\s*;", proto, flags=re.M).group(1)
        if declared != pkg:
            sys.exit(f"{directory}: package {declared}, expected {pkg}")
        messages = parse_proto(proto)
        structs = parse_go_structs(go_sources(repos[repo], args.ref, directory))

        def ref(t):
            if t in SCALARS:
                return t
            if t.startswith("."):
                p, _, name = t[1:].rpartition(".")
                if p not in alias_of:
                    sys.exit(f"{pkg}: type {t} is in a package not in PACKAGES")
                return f"{alias_of[p]}.{name}"
            if t not in messages:
                sys.exit(f"{pkg}: unknown type {t}")
            return f"{alias}.{t}"

        for name in sorted(messages):
            msg = messages[name]
            out.append(f"message {alias}.{name}" + (" list" if msg["list"] else ""))
            go = structs.get(name, {})
            for num, pname, kind, typ, key, value in msg["fields"]:
                json_name, omitempty, inline, pointer = go.get(num, (pname, True, False, False))
                if num not in go and not msg["list"]:
                    missing.append(f"{pkg}.{name}.{pname}")
                flags = ""
                if kind == "repeated":
                    flags += "r"
                if pointer or not omitempty:
                    flags += "z"
                if inline:
                    flags += "i"
                t = f"map<{ref(key)},{ref(value)}>" if kind == "map" else ref(typ)
                out.append(f" {num} {json_name or '-'} {t}" + (f" {flags}" if flags else ""))
    if missing:
        print(f"# no Go struct tag (proto name used): {' '.join(missing)}", file=sys.stderr)
    print("\n".join(out))


if __name__ == "__main__":
    main()
