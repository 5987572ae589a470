//! The MCP resources (`bm2://processes`, `bm2://process/{id}`, `bm2://logs/{id}`), their
//! subscriptions, and the `ServerHandler` that ties tools and resources together.

use std::sync::atomic::Ordering;

use bm2_types::{BusEvent, EventsRequest};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    ResourceUpdatedNotificationParam, ServerConfig, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{Peer, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::json;

use super::tools::{self, Bm2Mcp, TailArgs};

/// The process list.
pub const PROCESSES: &str = "bm2://processes";

/// What a resource URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri {
    /// The list.
    Processes,
    /// One process in detail.
    Process(u32),
    /// One process's last log lines.
    Logs(u32),
}

impl Uri {
    /// Reads a `bm2://` URI.
    pub fn parse(uri: &str) -> Option<Uri> {
        if uri == PROCESSES {
            return Some(Uri::Processes);
        }
        if let Some(id) = uri.strip_prefix("bm2://process/") {
            return id.parse().ok().map(Uri::Process);
        }
        uri.strip_prefix("bm2://logs/")?.parse().ok().map(Uri::Logs)
    }

    /// Whether an event about process `id` changes this resource (any event changes the list).
    pub fn changed_by(self, id: Option<u32>) -> bool {
        match self {
            Uri::Processes => true,
            Uri::Process(p) | Uri::Logs(p) => id.is_none_or(|id| id == p),
        }
    }
}

impl ServerHandler for Bm2Mcp {
    fn get_info(&self) -> ServerConfig {
        Bm2Mcp::info()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.call(request, context).await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool(name)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let list = Resource::new(PROCESSES, "processes")
            .with_description("The processes bm2 manages (as bm2_list_processes)")
            .with_mime_type("application/json");
        Ok(ListResourcesResult::with_all_items(vec![list]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("bm2://process/{id}", "process")
                .with_description("One process in detail (as bm2_describe_process)")
                .with_mime_type("application/json"),
            ResourceTemplate::new("bm2://logs/{id}", "logs")
                .with_description("The last 100 lines of a process's logs")
                .with_mime_type("text/plain"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let Some(what) = Uri::parse(&uri) else {
            return Err(McpError::resource_not_found(
                format!("no such resource: {uri}"),
                Some(json!({ "uri": uri })),
            ));
        };
        let daemon = |e: bm2_client::ClientError| McpError::internal_error(e.to_string(), None);
        let contents = match what {
            Uri::Processes => {
                let list = self.client().list().await.map_err(daemon)?;
                ResourceContents::text(json!({ "processes": tools::rows(&list) }).to_string(), &uri)
                    .with_mime_type("application/json")
            }
            Uri::Process(id) => {
                let d = self
                    .client()
                    .describe(vec![id.to_string()])
                    .await
                    .map_err(daemon)?;
                let Some(p) = d.processes.iter().find(|p| p.summary.id == id) else {
                    return Err(McpError::resource_not_found(
                        format!("no process {id}"),
                        None,
                    ));
                };
                ResourceContents::text(tools::detail(p).to_string(), &uri)
                    .with_mime_type("application/json")
            }
            Uri::Logs(id) => {
                let args = TailArgs {
                    process: id.to_string(),
                    lines: Some(100),
                    filter: None,
                    regex: false,
                    stream: tools::StreamChoice::Both,
                };
                let lines = tools::tail(self.client(), &args).await.map_err(|r| {
                    let text = serde_json::to_string(&r.content).unwrap_or_default();
                    McpError::resource_not_found(text, None)
                })?;
                let text: String = lines.iter().filter_map(|l| l["line"].as_str()).fold(
                    String::new(),
                    |mut t, l| {
                        t.push_str(l);
                        t.push('\n');
                        t
                    },
                );
                ResourceContents::text(text, &uri).with_mime_type("text/plain")
            }
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(acceptable(requested))
    }

    /// `subscriptions/listen` (protocol 2026-07-28): the accepted `bm2://` URIs are followed
    /// until the client cancels.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let sink = context.sink().clone();
        follow_events(
            self.client().home().clone(),
            context.cancelled(),
            move |id| {
                let uris = changed(uris.iter(), id);
                let sink = sink.clone();
                Box::pin(async move {
                    for uri in uris {
                        if sink.notify_resource_updated(uri).await.is_err() {
                            return false;
                        }
                    }
                    true
                })
            },
        )
        .await;
        Ok(())
    }

    #[allow(deprecated)] // resources/subscribe: the protocol versions clients speak today
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if Uri::parse(&request.uri).is_none() {
            return Err(McpError::resource_not_found(
                format!("no such resource: {}", request.uri),
                None,
            ));
        }
        self.subscribed().insert(request.uri);
        if !self.watching.swap(true, Ordering::SeqCst) {
            tokio::spawn(watch(self.clone(), context.peer));
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscribed().remove(&request.uri);
        Ok(())
    }
}

impl Bm2Mcp {
    fn subscribed(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Follows the daemon's events and tells the client which subscribed resources changed
/// (`resources/subscribe`), until the client goes away.
async fn watch(server: Bm2Mcp, peer: Peer<RoleServer>) {
    let closed = {
        let peer = peer.clone();
        async move {
            while !peer.is_transport_closed() {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    };
    let subscribed = server.clone();
    follow_events(server.client().home().clone(), closed, move |id| {
        let uris = changed(subscribed.subscribed().iter(), id);
        let peer = peer.clone();
        Box::pin(async move {
            for uri in uris {
                let param = ResourceUpdatedNotificationParam::new(uri);
                if peer.notify_resource_updated(param).await.is_err() {
                    return false;
                }
            }
            true
        })
    })
    .await;
    server.watching.store(false, Ordering::SeqCst);
}

/// The URIs among `uris` that an event about process `id` changes.
fn changed<'a>(uris: impl Iterator<Item = &'a String>, id: Option<u32>) -> Vec<String> {
    uris.filter(|u| Uri::parse(u).is_some_and(|w| w.changed_by(id)))
        .cloned()
        .collect()
}

/// Calls `changed` with the process of every lifecycle event of the daemon (`None` when events
/// may have been missed), until `stop` ends or `changed` says false. The daemon is followed
/// again when it comes back; this never starts one (after `bm2_kill_daemon`, none should run).
async fn follow_events(
    home: bm2_types::Home,
    stop: impl Future<Output = ()>,
    mut changed: impl FnMut(Option<u32>) -> Notified,
) {
    let client = bm2_client::Client::new(home);
    let req = EventsRequest::default();
    tokio::pin!(stop);
    let mut first = true;
    loop {
        let events = tokio::select! {
            () = &mut stop => return,
            events = client.events(&req) => events,
        };
        let Ok(mut events) = events else {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
            }
        };
        // Back after a gap: whatever was subscribed may have changed meanwhile.
        if !first && !changed(None).await {
            return;
        }
        first = false;
        loop {
            let event = tokio::select! {
                () = &mut stop => return,
                event = events.next() => event,
            };
            let id = match event {
                Some(Ok(BusEvent::Process { process, .. })) => Some(process.id),
                Some(Ok(BusEvent::Lagged { .. })) => None,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            };
            if !changed(id).await {
                return;
            }
        }
    }
}

/// Telling the client: false when it cannot be told any more.
type Notified = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

/// The resource URIs a `subscriptions/listen` request may follow: the `bm2://` ones.
pub fn acceptable(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut accepted = SubscriptionFilter::new();
    accepted.resource_subscriptions = requested
        .resource_subscriptions
        .as_ref()
        .map(|uris| {
            uris.iter()
                .filter(|u| Uri::parse(u).is_some())
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|uris| !uris.is_empty());
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_match_events() {
        assert_eq!(Uri::parse("bm2://processes"), Some(Uri::Processes));
        assert_eq!(Uri::parse("bm2://process/3"), Some(Uri::Process(3)));
        assert_eq!(Uri::parse("bm2://logs/12"), Some(Uri::Logs(12)));
        assert_eq!(Uri::parse("bm2://process/api"), None);
        assert_eq!(Uri::parse("file:///etc/passwd"), None);
        assert!(Uri::Processes.changed_by(Some(1)));
        assert!(Uri::Process(1).changed_by(Some(1)));
        assert!(!Uri::Process(1).changed_by(Some(2)));
        assert!(Uri::Logs(2).changed_by(None));
        let subs = [
            "bm2://processes".to_string(),
            "bm2://process/1".into(),
            "bm2://logs/2".into(),
        ];
        assert_eq!(
            changed(subs.iter(), Some(1)),
            ["bm2://processes", "bm2://process/1"]
        );
        assert_eq!(changed(subs.iter(), None).len(), 3);
    }

    #[test]
    fn listen_accepts_only_bm2_resources() {
        let mut req = SubscriptionFilter::new();
        req.tools_list_changed = Some(true);
        req.resource_subscriptions =
            Some(vec!["bm2://process/1".into(), "file:///etc/passwd".into()]);
        let ok = acceptable(&req);
        assert_eq!(
            ok.resource_subscriptions,
            Some(vec!["bm2://process/1".to_string()])
        );
        assert_eq!(ok.tools_list_changed, None);
        req.resource_subscriptions = Some(vec!["nope://x".into()]);
        assert_eq!(acceptable(&req).resource_subscriptions, None);
    }
}
