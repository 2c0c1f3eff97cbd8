//! `ContainerdRuntime` applying a container's security settings on a real containerd daemon
//! (started per test under a temp dir): the user and groups (`id`), user names from the
//! image's `/etc/passwd`, a read-only root, capabilities and `no_new_privs` as the process
//! sees them in `/proc/self/status`. Tests fail, not skip, without containerd and runc.

use std::collections::BTreeSet;

use kybernetes_runtime::{ContainerSecurity, ContainerState, Runtime};

#[path = "support/pods.rs"]
mod pods;
#[path = "support/containerd.rs"]
mod support;

use pods::{log_lines, pod, run_to_exit, shell, with_busybox};
use support::{Containerd, busybox_image_as};

/// Runs `script` under `security` in image `image` to its exit; returns its log lines.
async fn output_of(
    runtime: &kybernetes_runtime::containerd::ContainerdRuntime,
    name: &str,
    image: &str,
    script: &str,
    security: ContainerSecurity,
) -> Vec<String> {
    let sandbox = pod(name);
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let mut config = shell("main", script);
    config.image = image.into();
    config.security = security;
    let id = runtime
        .create_container(&sid, &config, &sandbox)
        .await
        .expect("create");
    match run_to_exit(runtime, &id).await {
        ContainerState::Exited { exit_code: 0, .. } => {}
        other => panic!("{other:?}: {:?}", log_lines(runtime, &id).await),
    }
    let lines = log_lines(runtime, &id).await;
    runtime.remove_pod_sandbox(&sid).await.expect("remove");
    lines.into_iter().map(|l| l.line).collect()
}

fn groups(line: &str) -> BTreeSet<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_groups_read_only_root_and_capabilities_follow_the_security_context() {
    let daemon = Containerd::start().await;
    let runtime = with_busybox(&daemon).await;
    let security = ContainerSecurity {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        supplemental_groups: vec![2000, 4000],
        readonly_rootfs: true,
        drop_capabilities: vec!["ALL".into()],
        add_capabilities: vec!["KILL".into(), "NET_BIND_SERVICE".into()],
        no_new_privs: true,
        ..Default::default()
    };
    let script = "id -u; id -g; id -G; touch /x 2>&1 || true; \
                  grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status";
    let out = output_of(&runtime, "secure", "busybox:test", script, security).await;
    assert_eq!(out[0], "1000", "{out:?}");
    assert_eq!(out[1], "3000", "{out:?}");
    assert_eq!(groups(&out[2]), BTreeSet::from(["2000", "3000", "4000"]));
    assert!(out[3].contains("Read-only file system"), "{out:?}");
    // CAP_KILL is bit 5, CAP_NET_BIND_SERVICE bit 10.
    // The bounding set is what the spec says; the kernel clears a non-root user's effective
    // set at exec (no ambient capabilities), as under containerd's CRI.
    assert!(
        out.contains(&"CapEff:\t0000000000000000".to_string()),
        "{out:?}"
    );
    assert!(
        out.contains(&"CapBnd:\t0000000000000420".to_string()),
        "{out:?}"
    );
    assert!(out.contains(&"NoNewPrivs:\t1".to_string()), "{out:?}");

    // Root keeps the effective set the spec gives.
    let out = output_of(
        &runtime,
        "root",
        "busybox:test",
        "grep -E '^CapEff:' /proc/self/status",
        ContainerSecurity {
            drop_capabilities: vec!["ALL".into()],
            add_capabilities: vec!["kill".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out, vec!["CapEff:\t0000000000000020"]);

    // By default: root, containerd's fourteen capabilities, privilege escalation allowed.
    let out = output_of(
        &runtime,
        "default",
        "busybox:test",
        "id -u; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; touch /x && echo wrote",
        ContainerSecurity::default(),
    )
    .await;
    assert_eq!(
        out,
        vec!["0", "CapEff:\t00000000a80425fb", "NoNewPrivs:\t0", "wrote"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_user_name_resolves_through_the_images_passwd_and_group() {
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;
    for (name, user) in [("busybox:app", "app"), ("busybox:ghost", "ghost")] {
        runtime
            .import_image(busybox_image_as(name, user))
            .await
            .expect("import");
    }
    let status = runtime
        .image_status("busybox:app")
        .await
        .expect("status")
        .expect("present");
    assert_eq!(
        (status.uid, status.username.as_deref()),
        (None, Some("app"))
    );

    let out = output_of(
        &runtime,
        "named",
        "busybox:app",
        "id -u; id -g; id -G",
        ContainerSecurity::default(),
    )
    .await;
    assert_eq!(&out[..2], ["1234", "1234"]);
    // `staff` (50) lists app as a member.
    assert_eq!(groups(&out[2]), BTreeSet::from(["50", "1234"]));

    // runAsUser wins over the image's user; a uid with no passwd entry has group 0.
    let out = output_of(
        &runtime,
        "numeric",
        "busybox:app",
        "id -u; id -g",
        ContainerSecurity {
            run_as_user: Some(4242),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out, ["4242", "0"]);

    // A user the image's passwd lacks is refused at create, and leaves nothing behind.
    let sandbox = pod("ghost");
    let sid = runtime.run_pod_sandbox(&sandbox).await.expect("sandbox");
    let mut config = shell("main", "true");
    config.image = "busybox:ghost".into();
    let err = runtime
        .create_container(&sid, &config, &sandbox)
        .await
        .expect_err("no such user");
    assert!(
        err.to_string()
            .contains("unable to find user ghost: no matching entries in passwd file"),
        "{err}"
    );
    assert!(
        runtime
            .list_containers(&Default::default())
            .await
            .expect("list")
            .is_empty()
    );
    let snapshots = daemon.ctr(&["snapshots", "--snapshotter", daemon.snapshotter, "ls"]);
    assert!(
        snapshots.lines().filter(|l| l.contains("Active")).count() == 0,
        "{snapshots}"
    );
    runtime.remove_pod_sandbox(&sid).await.expect("remove");
}
