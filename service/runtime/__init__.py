"""The data plane, grouped by concern: `engine/` (sessions, batching), `repository/` (loading, leases),
`generation/` (scheduler, sampling, stepping) and `tasks/` (one served-model class per task). `errors`
holds the exceptions it raises; the HTTP layer maps them to statuses (service.http_errors)."""
