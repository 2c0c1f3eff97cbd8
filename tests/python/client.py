"""The Python `kubernetes` client against a served Kybernetes cluster (tests/python_client.rs).

Argument: the kubeconfig. The cluster has a Running pod `py-web` in `default` whose container
`app` answers exec built-ins and serves HTTP on port 8080. Prints one `ok NAME` line per check
and exits non-zero at the first failure.
"""

import sys

from kubernetes import client, config, dynamic
from kubernetes.stream import portforward, stream


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok {name}")


def main(kubeconfig):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)

    pods = core.list_namespaced_pod("default")
    names = [p.metadata.name for p in pods.items]
    check("list pods", "py-web" in names, names)
    check("pod phase", core.read_namespaced_pod("py-web", "default").status.phase == "Running")

    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm"), data={"k": "v"})
    created = core.create_namespaced_config_map("default", cm)
    check("create configmap", created.metadata.resource_version is not None)
    check("read configmap", core.read_namespaced_config_map("py-cm", "default").data == {"k": "v"})
    try:
        core.create_namespaced_config_map("default", cm)
        check("duplicate create is refused", False, "no error")
    except client.exceptions.ApiException as e:
        check("duplicate create is refused with 409", e.status == 409, e.status)

    # exec over the v4/v5 WebSocket channels, through kubernetes.stream.stream.
    out = stream(
        core.connect_get_namespaced_pod_exec, "py-web", "default",
        command=["echo", "hello", "python"], stderr=True, stdin=False, stdout=True, tty=False,
    )
    check("exec output", out.strip() == "hello python", repr(out))
    resp = stream(
        core.connect_get_namespaced_pod_exec, "py-web", "default",
        command=["sh", "-c", "exit 3"], stderr=True, stdin=False, stdout=True, tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=30)
    check("exec exit code", resp.returncode == 3, resp.returncode)
    ws = stream(
        core.connect_get_namespaced_pod_exec, "py-web", "default",
        command=["cat"], stderr=True, stdin=True, stdout=True, tty=False,
        _preload_content=False,
    )
    ws.write_stdin("from stdin\n")
    got = ""
    for _ in range(100):
        ws.update(timeout=1)
        got += ws.read_stdout() if ws.peek_stdout() else ""
        if "from stdin" in got:
            break
    ws.close()
    check("exec stdin", "from stdin" in got, repr(got))

    # port-forward over the portforward.k8s.io WebSocket protocol.
    pf = portforward(core.connect_get_namespaced_pod_portforward, "py-web", "default", ports="8080")
    sock = pf.socket(8080)
    sock.settimeout(30)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: py\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    check("port-forward reaches the pod", b"hello from python's port-forward" in data, data[:200])
    check("port-forward has no error", pf.error(8080) is None, pf.error(8080))

    # Server-side apply with the dynamic client.
    dyn = dynamic.DynamicClient(api_client)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "py-ssa", "namespace": "default"}, "data": {"owner": "py"}}
    applied = cms.server_side_apply(body=body, namespace="default", field_manager="py")
    check("server-side apply creates", applied.data.owner == "py")
    managers = [m.manager for m in applied.metadata.managedFields]
    check("managedFields names the manager", "py" in managers, managers)
    other = dict(body, data={"owner": "other"})
    try:
        cms.server_side_apply(body=other, namespace="default", field_manager="other")
        check("a second manager conflicts", False, "no conflict")
    except dynamic.exceptions.ConflictError as e:
        check("a second manager conflicts with 409", e.status == 409, e.status)
    forced = cms.server_side_apply(body=other, namespace="default", field_manager="other",
                                   force_conflicts=True)
    check("force takes ownership", forced.data.owner == "other")

    core.delete_namespaced_config_map("py-cm", "default")
    try:
        core.read_namespaced_config_map("py-cm", "default")
        check("delete removes the configmap", False, "still there")
    except client.exceptions.ApiException as e:
        check("delete removes the configmap", e.status == 404, e.status)
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
