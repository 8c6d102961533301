//! Which gateway endpoint a request is for, from its method and path.

use crate::upstream::ProviderKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    Messages,
    /// `GET /v1/models`, answered from configuration.
    Models,
    /// `POST /v1/feedback`, a score for an earlier request, answered by the
    /// gateway (the record goes to the log sink).
    Feedback,
}

impl Route {
    /// The route of `method` + `path` (query string excluded), if any.
    pub fn classify(method: &http::Method, path: &str) -> Option<Route> {
        let route = match path {
            "/v1/chat/completions" => Route::ChatCompletions,
            "/v1/completions" => Route::Completions,
            "/v1/embeddings" => Route::Embeddings,
            "/v1/messages" => Route::Messages,
            "/v1/models" => Route::Models,
            "/v1/feedback" => Route::Feedback,
            _ => return None,
        };
        let expected = if route == Route::Models {
            http::Method::GET
        } else {
            http::Method::POST
        };
        (method == expected).then_some(route)
    }

    /// The route's path, as `classify` matched it.
    pub fn path(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/v1/chat/completions",
            Route::Completions => "/v1/completions",
            Route::Embeddings => "/v1/embeddings",
            Route::Messages => "/v1/messages",
            Route::Models => "/v1/models",
            Route::Feedback => "/v1/feedback",
        }
    }

    /// The provider kind that serves this route.
    pub fn provider_kind(self) -> Option<ProviderKind> {
        match self {
            Route::ChatCompletions | Route::Completions | Route::Embeddings => {
                Some(ProviderKind::OpenAi)
            }
            Route::Messages => Some(ProviderKind::Anthropic),
            Route::Models | Route::Feedback => None,
        }
    }

    /// Whether a streamed response on this route can carry an injected
    /// usage-only chunk (OpenAI's `stream_options.include_usage`).
    pub fn supports_stream_usage(self) -> bool {
        matches!(self, Route::ChatCompletions | Route::Completions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_method_and_exact_path() {
        assert_eq!(
            Route::classify(&http::Method::POST, "/v1/chat/completions"),
            Some(Route::ChatCompletions)
        );
        assert_eq!(
            Route::classify(&http::Method::GET, "/v1/models"),
            Some(Route::Models)
        );
        assert_eq!(
            Route::classify(&http::Method::GET, "/v1/chat/completions"),
            None
        );
        assert_eq!(Route::classify(&http::Method::POST, "/v1/models"), None);
        assert_eq!(
            Route::classify(&http::Method::POST, "/v1/feedback"),
            Some(Route::Feedback)
        );
        assert_eq!(Route::classify(&http::Method::GET, "/v1/feedback"), None);
        assert_eq!(
            Route::classify(&http::Method::POST, "/v1/chat/completions/"),
            None
        );
        assert_eq!(Route::classify(&http::Method::POST, "/admin"), None);
    }
}
