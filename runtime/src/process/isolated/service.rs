//! The `Runtime` calls that isolated mode answers differently from host mode: networking
//! goes into the pod's namespace, images are unpacked archives, and shutdown undoes every
//! namespace, mount, cgroup and runc container it set up.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;

use super::Isolation;
use crate::container::ContainerConfig;
use crate::container::ContainerState;
use crate::image::Image;
use crate::probe::{ProbeRequest, ProbeResult};
use crate::process::{ProcessContainer, ProcessRuntime, ProcessSandbox};
use crate::stream::PortForwardStream;
use crate::{Error, Result};

/// How long runc may take to create a container.
const CREATE: Duration = Duration::from_secs(60);

impl ProcessRuntime {
    /// A container of isolated mode: its main process is `runc run` of its bundle, and
    /// runc gives it the spec's environment, user and working directory.
    pub(crate) fn new_isolated(
        &self,
        iso: &Isolation,
        sandbox: &ProcessSandbox,
        config: &ContainerConfig,
    ) -> Result<ProcessContainer> {
        let (id, image_ref) = self.new_id_for(config)?;
        let (argv, bundle) =
            iso.prepare(&id, sandbox, config, self.inner.mapping(&config.image))?;
        Ok(self.container_record(
            id,
            sandbox,
            config,
            image_ref,
            crate::process::service::ProcessContainerParts {
                argv,
                env: Vec::new(),
                working_dir: bundle.dir.clone(),
                netns: None,
                user: None,
                bundle: Some(bundle),
            },
        ))
    }

    /// In isolated mode, waits until runc has created container `id`, so that exec and
    /// signals reach it, or until runc ended: one that could not start the container makes
    /// that the start's error (its status says `StartError` with runc's reason).
    pub(crate) async fn wait_created(&self, id: &str) -> Result<()> {
        if self.inner.isolation.is_none() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + CREATE;
        loop {
            let (bundle, state) = {
                let st = self.inner.lock();
                let Some(c) = st.containers.get(id) else {
                    return Ok(());
                };
                (c.bundle.clone(), c.status.state.clone())
            };
            let Some(bundle) = bundle else {
                return Ok(());
            };
            match state {
                ContainerState::Running { .. } if Isolation::created(&bundle) => return Ok(()),
                ContainerState::Running { .. } => {}
                ContainerState::Exited {
                    reason, message, ..
                } if reason == "StartError" => {
                    return Err(Error::Backend {
                        context: message,
                        source: None,
                    });
                }
                _ => return Ok(()),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    operation: format!("runc creating container {id}"),
                    timeout: CREATE,
                });
            }
            // runc signals creation only by the pid file it writes.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A connection to `port` on the loopback of the pod's namespace `netns`.
    pub(crate) async fn isolated_port_forward(
        &self,
        netns: PathBuf,
        port: u16,
    ) -> Result<Box<dyn PortForwardStream>> {
        match crate::oci::netns::connect(netns, port).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(Error::Backend {
                context: format!(
                    "failed to connect to localhost:{port} in the pod's network namespace: {e}"
                ),
                source: Some(Box::new(e)),
            }),
        }
    }

    /// Network probes run inside the pod's namespace, as ContainerdRuntime's do.
    pub(crate) async fn isolated_probe(
        &self,
        container_id: &str,
        request: &ProbeRequest,
    ) -> ProbeResult {
        let sandbox = {
            let st = self.inner.lock();
            st.containers
                .get(container_id)
                .and_then(|c| st.sandboxes.get(&c.status.sandbox_id))
                .and_then(|s| {
                    let ip = s.config.pod_ip.map(|ip| ip.to_string());
                    s.netns.clone().map(|n| (n, s.owns_netns, ip))
                })
        };
        match sandbox {
            Some((netns, owns, pod_ip)) => {
                crate::oci::probe::run(self, container_id, request, netns, owns, pod_ip).await
            }
            None => crate::probe::run_default(self, container_id, request).await,
        }
    }

    /// Imports the archives the builder named, once.
    pub(crate) async fn import_pending(&self) -> Result<()> {
        let Some(iso) = &self.inner.isolation else {
            return Ok(());
        };
        let images = iso.import_pending(&iso.images_dir()).await?;
        self.record_images(images);
        Ok(())
    }

    /// Unpacks the images of an OCI archive and records them.
    pub(crate) async fn isolated_import(&self, tarball: Bytes) -> Result<Vec<Image>> {
        let Some(iso) = &self.inner.isolation else {
            return Ok(Vec::new());
        };
        let images = iso.import(&iso.images_dir(), tarball).await?;
        self.record_images(images.clone());
        Ok(images)
    }

    fn record_images(&self, images: Vec<Image>) {
        let mut st = self.inner.lock();
        for image in images {
            // A tag imported again names the new image.
            for old in st.images.iter_mut() {
                old.repo_tags.retain(|t| !image.repo_tags.contains(t));
            }
            st.images.retain(|i| {
                i.id != image.id && !(i.repo_tags.is_empty() && i.repo_digests.is_empty())
            });
            st.images.push(image);
        }
    }

    /// After every container was killed and reaped: each one deleted from runc and its
    /// bundle removed, each namespace this runtime made removed, then the cgroup parent and
    /// runc's state. Logs stay.
    pub(crate) async fn isolated_teardown(&self) {
        let Some(iso) = &self.inner.isolation else {
            return;
        };
        let (bundles, namespaces) = {
            let mut st = self.inner.lock();
            let bundles: Vec<_> = st
                .containers
                .iter_mut()
                .filter_map(|(id, c)| c.bundle.take().map(|b| (id.clone(), b)))
                .collect();
            let namespaces: Vec<_> = st
                .sandboxes
                .values_mut()
                .filter(|s| s.owns_netns)
                .filter_map(|s| {
                    s.owns_netns = false;
                    s.netns.clone()
                })
                .collect();
            (bundles, namespaces)
        };
        for (id, bundle) in &bundles {
            iso.delete(id).await;
            super::bundle::remove(bundle);
        }
        for netns in &namespaces {
            iso.remove_netns(netns);
        }
        iso.teardown();
        debug!(
            containers = bundles.len(),
            namespaces = namespaces.len(),
            "isolated mode torn down"
        );
    }
}
