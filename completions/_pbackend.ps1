
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'pbackend' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'pbackend'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'pbackend' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the HTTP server')
            [CompletionResult]::new('stack', 'stack', [CompletionResultType]::ParameterValue, 'Inspect and maintain stacks on the database directly')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Export the whole instance to an archive (`--all`), for disaster recovery')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Restore a whole-instance archive (`--all`) into a database')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Take a checksummed backup into a directory, safe while the server runs (`--keep N` rotates)')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Restore a backup made by `pbackend backup` into a new database, after checking its checksum and master key')
            [CompletionResult]::new('adopt', 'adopt', [CompletionResultType]::ParameterValue, 'Adopt every stack of a DIY backend (`file://…` or `s3://…`), with its history and secrets re-encrypted for the service')
            [CompletionResult]::new('tokens', 'tokens', [CompletionResultType]::ParameterValue, 'Create, list and revoke API access tokens')
            [CompletionResult]::new('users', 'users', [CompletionResultType]::ParameterValue, 'Users: list, create, disable (their tokens stop at the next request), enable')
            [CompletionResult]::new('orgs', 'orgs', [CompletionResultType]::ParameterValue, 'Organizations, their members and default stack permission')
            [CompletionResult]::new('teams', 'teams', [CompletionResultType]::ParameterValue, 'Teams: members and the stacks they may use')
            [CompletionResult]::new('roles', 'roles', [CompletionResultType]::ParameterValue, 'Custom roles and their assignment to teams')
            [CompletionResult]::new('oidc', 'oidc', [CompletionResultType]::ParameterValue, 'OIDC trust policies for `pulumi login --oidc-token`')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read the audit log: every change and refused request, by whom, from where')
            [CompletionResult]::new('rotate-keys', 'rotate-keys', [CompletionResultType]::ParameterValue, 'Re-wrap every stack''s secrets key under a new master key, in one transaction')
            [CompletionResult]::new('prune-versions', 'prune-versions', [CompletionResultType]::ParameterValue, 'Delete old versions of stack states beyond --keep')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check every stored version, journal, key and the database itself; exit 1 on problems')
            [CompletionResult]::new('replay-journal', 'replay-journal', [CompletionResultType]::ParameterValue, 'Rebuild a stack''s state from its stored journal')
            [CompletionResult]::new('migrate-store', 'migrate-store', [CompletionResultType]::ParameterValue, 'Copy a whole instance to another database (SQLite to PostgreSQL, or back), verified')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show the effective configuration (`config show`)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;serve' {
            [CompletionResult]::new('--addr', '--addr', [CompletionResultType]::ParameterName, 'Address to listen on')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve HTTPS with this PEM certificate chain (leaf first). It and --tls-key are loaded again when either file changes on disk, and on SIGHUP')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert')
            [CompletionResult]::new('--console', '--console', [CompletionResultType]::ParameterName, 'Serve the web console at the API''s address (`--console=false` turns it off). Point the CLI''s links at it with PULUMI_CONSOLE_DOMAIN=<host:port>, printed at start')
            [CompletionResult]::new('--trusted-proxies', '--trusted-proxies', [CompletionResultType]::ParameterName, 'Proxies (addresses or networks, comma-separated: `10.0.0.0/8,192.168.1.10`) whose X-Forwarded-For / X-Real-IP headers name the client. The client''s address then goes to the logs, audit events and leases; from anyone else those headers are ignored. Default: none')
            [CompletionResult]::new('--shutdown-grace', '--shutdown-grace', [CompletionResultType]::ParameterName, 'On SIGTERM or SIGINT: stop accepting, fail /readyz, and give requests in flight this long to finish before their connections are closed (the CLI retries what was cut)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--auth-mode', '--auth-mode', [CompletionResultType]::ParameterName, 'How users log in. API tokens always work')
            [CompletionResult]::new('--public-url', '--public-url', [CompletionResultType]::ParameterName, 'The URL users and the identity provider reach this server at (default: the listening address); the provider redirects to <URL>/api/auth/callback')
            [CompletionResult]::new('--oidc-issuer', '--oidc-issuer', [CompletionResultType]::ParameterName, 'The OpenID provider''s issuer URL (its discovery document is at <issuer>/.well-known/openid-configuration)')
            [CompletionResult]::new('--oidc-client-id', '--oidc-client-id', [CompletionResultType]::ParameterName, 'This server''s client id at the provider')
            [CompletionResult]::new('--oidc-client-secret', '--oidc-client-secret', [CompletionResultType]::ParameterName, 'The client secret (prefer the environment variable or --oidc-client-secret-file)')
            [CompletionResult]::new('--oidc-client-secret-file', '--oidc-client-secret-file', [CompletionResultType]::ParameterName, 'A file holding the client secret')
            [CompletionResult]::new('--oidc-scopes', '--oidc-scopes', [CompletionResultType]::ParameterName, 'Scopes to ask for besides `openid` (space-separated)')
            [CompletionResult]::new('--oidc-login-claim', '--oidc-login-claim', [CompletionResultType]::ParameterName, 'The ID-token claim whose value becomes the user''s login')
            [CompletionResult]::new('--oidc-groups-claim', '--oidc-groups-claim', [CompletionResultType]::ParameterName, 'The claim listing the user''s groups (for --group-map)')
            [CompletionResult]::new('--google-hosted-domain', '--google-hosted-domain', [CompletionResultType]::ParameterName, 'Google: only accounts of this Workspace domain (the `hd` claim)')
            [CompletionResult]::new('--group-map', '--group-map', [CompletionResultType]::ParameterName, 'Where members of an identity-provider group go: GROUP=org:ORG:ROLE (member, admin, billing-manager) or GROUP=team:ORG/TEAM. Repeat for more; mapped places follow the groups at every login and refresh')
            [CompletionResult]::new('--jwt-hmac-secret', '--jwt-hmac-secret', [CompletionResultType]::ParameterName, 'JWT mode: an HMAC secret (prefer the environment variable or the file flag)')
            [CompletionResult]::new('--jwt-hmac-secret-file', '--jwt-hmac-secret-file', [CompletionResultType]::ParameterName, 'JWT mode: a file holding the HMAC secret')
            [CompletionResult]::new('--jwt-public-key-file', '--jwt-public-key-file', [CompletionResultType]::ParameterName, 'JWT mode: an RSA or EC public key (PEM file)')
            [CompletionResult]::new('--jwt-jwks-url', '--jwt-jwks-url', [CompletionResultType]::ParameterName, 'JWT mode: a JWKS URL (keys fetched again when an unknown key id appears)')
            [CompletionResult]::new('--jwt-issuer', '--jwt-issuer', [CompletionResultType]::ParameterName, 'JWT mode: the required `iss`')
            [CompletionResult]::new('--jwt-audience', '--jwt-audience', [CompletionResultType]::ParameterName, 'JWT mode: the required `aud`')
            [CompletionResult]::new('--jwt-login-claim', '--jwt-login-claim', [CompletionResultType]::ParameterName, 'JWT mode: the claim that names the user')
            [CompletionResult]::new('--jwt-groups-claim', '--jwt-groups-claim', [CompletionResultType]::ParameterName, 'JWT mode: the claim listing the user''s groups')
            [CompletionResult]::new('--login-token-ttl', '--login-token-ttl', [CompletionResultType]::ParameterName, 'Lifetime of the access token a browser login or a refresh issues')
            [CompletionResult]::new('--refresh-token-ttl', '--refresh-token-ttl', [CompletionResultType]::ParameterName, 'Lifetime of refresh tokens')
            [CompletionResult]::new('--single-tenant-token', '--single-tenant-token', [CompletionResultType]::ParameterName, 'The API token that grants access (as `--user`). When not given, the token from the previous start is kept; on a new database one is generated and printed once')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'The organization stacks live in (the CLI''s default organization)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user name the API token acts as')
            [CompletionResult]::new('--audit-retention', '--audit-retention', [CompletionResultType]::ParameterName, 'How long audit events are kept (a duration: 365d, 90d, ...); older ones are deleted daily. `0` keeps them forever')
            [CompletionResult]::new('--management-addr', '--management-addr', [CompletionResultType]::ParameterName, 'Address of the management listener (`/healthz`, `/readyz`, `/metrics`); off unless given. Keep it off the public network')
            [CompletionResult]::new('--webhook-max-attempts', '--webhook-max-attempts', [CompletionResultType]::ParameterName, 'Attempts per webhook delivery before it is given up (retries back off from 1 s, doubling, up to an hour apart)')
            [CompletionResult]::new('--webhook-timeout', '--webhook-timeout', [CompletionResultType]::ParameterName, 'The longest one webhook delivery may take')
            [CompletionResult]::new('--backup-to', '--backup-to', [CompletionResultType]::ParameterName, 'Take scheduled backups into this directory or `s3://bucket/prefix` (S3 credentials, region and endpoint from the AWS_* environment variables): `pbackend-<UTC time>.pbk` with a `.sha256`, as `pbackend backup` makes them; restore with `pbackend restore`. Off unless given. With replicas on PostgreSQL, give it to one of them')
            [CompletionResult]::new('--backup-schedule', '--backup-schedule', [CompletionResultType]::ParameterName, 'How often to back up to --backup-to. The first backup is due one interval after the newest one already there (at once when there is none)')
            [CompletionResult]::new('--backup-keep', '--backup-keep', [CompletionResultType]::ParameterName, 'Backups to keep in --backup-to; the oldest beyond this are deleted after each successful backup (0 keeps all)')
            [CompletionResult]::new('--lease-duration', '--lease-duration', [CompletionResultType]::ParameterName, 'How long an update''s lease lasts without renewal (seconds, or with s/m/h). The CLI renews every 2.5 minutes assuming 5; keep it at 5m or more outside tests')
            [CompletionResult]::new('--max-state-versions', '--max-state-versions', [CompletionResultType]::ParameterName, 'Versions of each stack''s state to keep (older ones are deleted)')
            [CompletionResult]::new('--delta-cutoff-bytes', '--delta-cutoff-bytes', [CompletionResultType]::ParameterName, 'Checkpoints smaller than this are uploaded whole instead of as deltas')
            [CompletionResult]::new('--max-state-bytes', '--max-state-bytes', [CompletionResultType]::ParameterName, 'Largest decompressed body accepted for a whole deployment (checkpoints, import). Other bodies are capped at 32 MiB and journal batches at 64 MiB (or this, if smaller)')
            [CompletionResult]::new('--max-journal-version', '--max-journal-version', [CompletionResultType]::ParameterName, 'Highest journal protocol offered to a CLI that asks for journaling (CLI v3.277+ asks for 2, earlier ones for 1); 0 makes every CLI send checkpoints instead')
            [CompletionResult]::new('--db-pool-size', '--db-pool-size', [CompletionResultType]::ParameterName, 'Connections to a PostgreSQL database held open at most (each write is one transaction on one of them)')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Open client connections at most; further ones wait until one closes')
            [CompletionResult]::new('--max-concurrent-requests', '--max-concurrent-requests', [CompletionResultType]::ParameterName, 'Requests handled at once; more wait up to --request-queue-timeout, then get 503')
            [CompletionResult]::new('--request-queue-timeout', '--request-queue-timeout', [CompletionResultType]::ParameterName, 'How long a request waits for one of those slots (seconds, or with s/m/h)')
            [CompletionResult]::new('--max-inflight-body-bytes', '--max-inflight-body-bytes', [CompletionResultType]::ParameterName, 'Request-body bytes (as received and decompressed) held at once across all requests; beyond it requests get 503 and are retried. Default and minimum: 1.25 × --max-state-bytes')
            [CompletionResult]::new('--header-read-timeout', '--header-read-timeout', [CompletionResultType]::ParameterName, 'A client must send a request''s headers within this')
            [CompletionResult]::new('--body-idle-timeout', '--body-idle-timeout', [CompletionResultType]::ParameterName, 'A request body may pause this long between two pieces')
            [CompletionResult]::new('--body-deadline', '--body-deadline', [CompletionResultType]::ParameterName, 'A request body must arrive whole within this')
            [CompletionResult]::new('--writer-queue', '--writer-queue', [CompletionResultType]::ParameterName, 'Writes waiting for the database writer at most; a write that finds the queue full for 10 s gets 503')
            [CompletionResult]::new('--rate-limit', '--rate-limit', [CompletionResultType]::ParameterName, 'Reads (GET/HEAD) each credential may make, per window: `100/10s,600/1m` (the service''s published limits), or `off`. Over it: 429 with Retry-After, which the CLI honours. Writes and calls under an update''s lease are never limited; each replica counts its own')
            [CompletionResult]::new('--durability', '--durability', [CompletionResultType]::ParameterName, 'What an acknowledged write survives: `normal` survives the process being killed; `full` also survives an OS crash or power loss, at the cost of an fsync per write (see reference/reliability.md for the measured cost)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--insecure-http', '--insecure-http', [CompletionResultType]::ParameterName, 'Serve plain HTTP on a non-loopback --addr. Refused without this flag: tokens and secrets would cross the network in clear. Give it when a proxy in front terminates TLS (and set --trusted-proxies to that proxy)')
            [CompletionResult]::new('--webhooks-allow-loopback', '--webhooks-allow-loopback', [CompletionResultType]::ParameterName, 'Let webhooks deliver to loopback addresses (refused by default, as are link-local and cloud-metadata addresses, always)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'pbackend;stack' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List stacks: resources, last update, version, the update holding it, state size')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one stack: tags, kept versions, recent history, lock, secrets key')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a stack with its history. Refused while it has resources, unless --force')
            [CompletionResult]::new('unlock', 'unlock', [CompletionResultType]::ParameterValue, 'Cancel the update holding a stack (a crashed CLI, a stuck lease), keeping the state it reached. The CLI''s `pulumi cancel`, for when the CLI cannot')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a stack''s deployment exactly as `pulumi stack export` does, for `pulumi stack import` anywhere')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Store a deployment file as a new version of a stack. Plaintext secrets (from --show-secrets exports) are encrypted with the stack''s key; secrets of another stack of this database are re-encrypted; secrets that would not decrypt are refused')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Roll a stack back to a kept version: that version''s state becomes the newest version (recorded as an import, with an audit event), and the versions in between stay in the history. Refused while an update holds the stack. The console''s "Roll back"')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;stack;ls' {
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'Only this organization')
            [CompletionResult]::new('--project', '--project', [CompletionResultType]::ParameterName, 'Only this project')
            [CompletionResult]::new('--tag', '--tag', [CompletionResultType]::ParameterName, 'Only stacks with this tag (NAME or NAME=VALUE)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;stack;show' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;stack;rm' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Delete even with resources in its state, or while an update holds it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;stack;unlock' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;stack;export' {
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'A kept older version instead of the current state')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Write to this file instead of stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Write to this file instead of stdout')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--show-secrets', '--show-secrets', [CompletionResultType]::ParameterName, 'Decrypt service-encrypted secrets (needs the master key)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;stack;import' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--create', '--create', [CompletionResultType]::ParameterName, 'Create the stack when it does not exist')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;stack;rollback' {
            [CompletionResult]::new('--to-version', '--to-version', [CompletionResultType]::ParameterName, 'The kept version whose state to restore (`pbackend stack show` lists them)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;stack;help' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List stacks: resources, last update, version, the update holding it, state size')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one stack: tags, kept versions, recent history, lock, secrets key')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a stack with its history. Refused while it has resources, unless --force')
            [CompletionResult]::new('unlock', 'unlock', [CompletionResultType]::ParameterValue, 'Cancel the update holding a stack (a crashed CLI, a stuck lease), keeping the state it reached. The CLI''s `pulumi cancel`, for when the CLI cannot')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a stack''s deployment exactly as `pulumi stack export` does, for `pulumi stack import` anywhere')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Store a deployment file as a new version of a stack. Plaintext secrets (from --show-secrets exports) are encrypted with the stack''s key; secrets of another stack of this database are re-encrypted; secrets that would not decrypt are refused')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Roll a stack back to a kept version: that version''s state becomes the newest version (recorded as an import, with an audit event), and the versions in between stay in the history. Refused while an update holds the stack. The console''s "Roll back"')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;stack;help;ls' {
            break
        }
        'pbackend;stack;help;show' {
            break
        }
        'pbackend;stack;help;rm' {
            break
        }
        'pbackend;stack;help;unlock' {
            break
        }
        'pbackend;stack;help;export' {
            break
        }
        'pbackend;stack;help;import' {
            break
        }
        'pbackend;stack;help;rollback' {
            break
        }
        'pbackend;stack;help;help' {
            break
        }
        'pbackend;export' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'The archive to write (gzip; format in reference/cli.md)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'The archive to write (gzip; format in reference/cli.md)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Export the whole instance (every stack with its versions, history, tags, events, journals and wrapped keys, and the access tokens)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;import' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--merge', '--merge', [CompletionResultType]::ParameterName, 'How to merge into a database that already has stacks (default: refuse)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Import a whole-instance archive made by `pbackend export --all`')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'pbackend;backup' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Where to write the backup: a directory (created if missing) or `s3://bucket/prefix` (S3 credentials, region and endpoint from the AWS_* environment variables). It gets an archive `pbackend-<UTC time>.pbk` and its `.sha256`. Safe while the server runs: the backup is one consistent snapshot')
            [CompletionResult]::new('--keep', '--keep', [CompletionResultType]::ParameterName, 'Complete backups to keep in DEST; after a successful backup the oldest beyond this are deleted. 0 keeps them all')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;restore' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;adopt' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'The organization the stacks go to')
            [CompletionResult]::new('--passphrase-file', '--passphrase-file', [CompletionResultType]::ParameterName, 'A file holding the passphrase of passphrase-encrypted stacks (else PULUMI_CONFIG_PASSPHRASE, as the CLI reads it)')
            [CompletionResult]::new('--public-url', '--public-url', [CompletionResultType]::ParameterName, 'The URL users `pulumi login` to (the server''s --public-url); adopted states name it as their secrets service, as the CLI would')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Read and check everything (passphrase included), write nothing')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;tokens' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a token; it is printed once and only its hash is stored. With --user: a personal token (the user is created, and made a member of --org, when new). Without --user: an organization token (--org and --name) or a team token (--team and --name)')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List tokens (never their secrets)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a token by id, or every token of a user: `pbackend tokens revoke alice`. A running server refuses a revoked token from its next request')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;tokens;create' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user a personal token acts as (shown by `pulumi whoami`)')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'The organization: where a new user becomes a member, or whose token this is')
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'A new user''s role in --org')
            [CompletionResult]::new('--team', '--team', [CompletionResultType]::ParameterName, 'A team token for ORG/TEAM')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'An organization or team token''s name (unique in its organization)')
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'What the token is for')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'Lifetime, e.g. 90d or 12h; without it the token does not expire')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--admin', '--admin', [CompletionResultType]::ParameterName, 'An organization token with admin rights')
            [CompletionResult]::new('--refresh', '--refresh', [CompletionResultType]::ParameterName, 'Also print a refresh token, exchangeable at /api/oauth/token for new access tokens (personal tokens; the access token then lives --expires, default 1h)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;tokens;ls' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only this user''s tokens')
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'Only this organization''s tokens')
            [CompletionResult]::new('--team', '--team', [CompletionResultType]::ParameterName, 'Only this team''s tokens (ORG/TEAM)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;tokens;revoke' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Revoke every token of this user')
            [CompletionResult]::new('--team', '--team', [CompletionResultType]::ParameterName, 'Revoke every token of this team (ORG/TEAM)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;tokens;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a token; it is printed once and only its hash is stored. With --user: a personal token (the user is created, and made a member of --org, when new). Without --user: an organization token (--org and --name) or a team token (--team and --name)')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List tokens (never their secrets)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a token by id, or every token of a user: `pbackend tokens revoke alice`. A running server refuses a revoked token from its next request')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;tokens;help;create' {
            break
        }
        'pbackend;tokens;help;ls' {
            break
        }
        'pbackend;tokens;help;revoke' {
            break
        }
        'pbackend;tokens;help;help' {
            break
        }
        'pbackend;users' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List users')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Add a user (they log in with a token from `pbackend tokens create --user`)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user: every token of theirs stops at the next request; logins refused')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;users;ls' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;users;create' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;users;disable' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;users;enable' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;users;help' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List users')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Add a user (they log in with a token from `pbackend tokens create --user`)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user: every token of theirs stops at the next request; logins refused')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user again')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;users;help;ls' {
            break
        }
        'pbackend;users;help;create' {
            break
        }
        'pbackend;users;help;disable' {
            break
        }
        'pbackend;users;help;enable' {
            break
        }
        'pbackend;users;help;help' {
            break
        }
        'pbackend;orgs' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List organizations')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create an organization')
            [CompletionResult]::new('set-default-permission', 'set-default-permission', [CompletionResultType]::ParameterValue, 'Set what every member may do with every stack (grants add to it)')
            [CompletionResult]::new('members', 'members', [CompletionResultType]::ParameterValue, 'List an organization''s members')
            [CompletionResult]::new('set-member', 'set-member', [CompletionResultType]::ParameterValue, 'Add a member, or change a member''s role (the user is created when new)')
            [CompletionResult]::new('remove-member', 'remove-member', [CompletionResultType]::ParameterValue, 'Remove a member (and their places in the organization''s teams)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;orgs;ls' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;orgs;create' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;orgs;set-default-permission' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;orgs;members' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;orgs;set-member' {
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'role')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;orgs;remove-member' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;orgs;help' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List organizations')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create an organization')
            [CompletionResult]::new('set-default-permission', 'set-default-permission', [CompletionResultType]::ParameterValue, 'Set what every member may do with every stack (grants add to it)')
            [CompletionResult]::new('members', 'members', [CompletionResultType]::ParameterValue, 'List an organization''s members')
            [CompletionResult]::new('set-member', 'set-member', [CompletionResultType]::ParameterValue, 'Add a member, or change a member''s role (the user is created when new)')
            [CompletionResult]::new('remove-member', 'remove-member', [CompletionResultType]::ParameterValue, 'Remove a member (and their places in the organization''s teams)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;orgs;help;ls' {
            break
        }
        'pbackend;orgs;help;create' {
            break
        }
        'pbackend;orgs;help;set-default-permission' {
            break
        }
        'pbackend;orgs;help;members' {
            break
        }
        'pbackend;orgs;help;set-member' {
            break
        }
        'pbackend;orgs;help;remove-member' {
            break
        }
        'pbackend;orgs;help;help' {
            break
        }
        'pbackend;teams' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List an organization''s teams')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a team')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a team (its tokens are revoked, its stack grants removed)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a team: members and stacks')
            [CompletionResult]::new('add-member', 'add-member', [CompletionResultType]::ParameterValue, 'Add an organization member to a team')
            [CompletionResult]::new('remove-member', 'remove-member', [CompletionResultType]::ParameterValue, 'Remove a member from a team')
            [CompletionResult]::new('grant', 'grant', [CompletionResultType]::ParameterValue, 'Give the team a permission on a stack of its organization (none removes it)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;teams;ls' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;teams;create' {
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'description')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;teams;delete' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;teams;show' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;teams;add-member' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--admin', '--admin', [CompletionResultType]::ParameterName, 'As a team admin')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;teams;remove-member' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;teams;grant' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;teams;help' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List an organization''s teams')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a team')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a team (its tokens are revoked, its stack grants removed)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a team: members and stacks')
            [CompletionResult]::new('add-member', 'add-member', [CompletionResultType]::ParameterValue, 'Add an organization member to a team')
            [CompletionResult]::new('remove-member', 'remove-member', [CompletionResultType]::ParameterValue, 'Remove a member from a team')
            [CompletionResult]::new('grant', 'grant', [CompletionResultType]::ParameterValue, 'Give the team a permission on a stack of its organization (none removes it)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;teams;help;ls' {
            break
        }
        'pbackend;teams;help;create' {
            break
        }
        'pbackend;teams;help;delete' {
            break
        }
        'pbackend;teams;help;show' {
            break
        }
        'pbackend;teams;help;add-member' {
            break
        }
        'pbackend;teams;help;remove-member' {
            break
        }
        'pbackend;teams;help;grant' {
            break
        }
        'pbackend;teams;help;help' {
            break
        }
        'pbackend;roles' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List an organization''s custom roles')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a custom role granting scopes (stack:read, stack:write, team:create, ...)')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a custom role (with --force also when assigned)')
            [CompletionResult]::new('assign', 'assign', [CompletionResultType]::ParameterValue, 'Assign a role to a team (replacing its role), or with --none remove it')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;roles;ls' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;roles;create' {
            [CompletionResult]::new('--scopes', '--scopes', [CompletionResultType]::ParameterName, 'Scopes, comma-separated')
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'description')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;roles;rm' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'force')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;roles;assign' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--none', '--none', [CompletionResultType]::ParameterName, 'none')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;roles;help' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List an organization''s custom roles')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a custom role granting scopes (stack:read, stack:write, team:create, ...)')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a custom role (with --force also when assigned)')
            [CompletionResult]::new('assign', 'assign', [CompletionResultType]::ParameterValue, 'Assign a role to a team (replacing its role), or with --none remove it')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;roles;help;ls' {
            break
        }
        'pbackend;roles;help;create' {
            break
        }
        'pbackend;roles;help;rm' {
            break
        }
        'pbackend;roles;help;assign' {
            break
        }
        'pbackend;roles;help;help' {
            break
        }
        'pbackend;oidc' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List trust policies: which identity providers'' tokens an organization exchanges')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Trust an issuer''s ID tokens for `pulumi login --oidc-token`')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Remove a trust policy')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;oidc;ls' {
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'Only this organization''s policies')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;oidc;add' {
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'The organization whose tokens the exchange issues (`pulumi login --oidc-org`)')
            [CompletionResult]::new('--issuer', '--issuer', [CompletionResultType]::ParameterName, 'The token''s `iss` (its keys come from the issuer''s OpenID discovery)')
            [CompletionResult]::new('--audience', '--audience', [CompletionResultType]::ParameterName, 'The `aud` the token must carry (default: urn:pulumi:org:<org>)')
            [CompletionResult]::new('--token-kind', '--token-kind', [CompletionResultType]::ParameterName, 'What token the exchange issues')
            [CompletionResult]::new('--team', '--team', [CompletionResultType]::ParameterName, 'The team of a team token')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user of a personal token')
            [CompletionResult]::new('--rule', '--rule', [CompletionResultType]::ParameterName, 'CLAIM=VALUE the token must carry (VALUE may end in `*`); repeat for more')
            [CompletionResult]::new('--max-expiration', '--max-expiration', [CompletionResultType]::ParameterName, 'The longest lifetime of an issued token')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;oidc;rm' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;oidc;help' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List trust policies: which identity providers'' tokens an organization exchanges')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Trust an issuer''s ID tokens for `pulumi login --oidc-token`')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Remove a trust policy')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;oidc;help;ls' {
            break
        }
        'pbackend;oidc;help;add' {
            break
        }
        'pbackend;oidc;help;rm' {
            break
        }
        'pbackend;oidc;help;help' {
            break
        }
        'pbackend;audit' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Print audit events as CSV or CEF (for a SIEM), newest first')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete events older than a duration (`90d`); `serve --audit-retention` does it daily')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;audit;ls' {
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'Only this organization''s events')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Only events of this kind (`stack-created`, `auth-failure`, ...; see reference/integrations.md)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only events by this user (login)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Events at or after: a Unix timestamp, RFC 3339, or a duration ago (`24h`, `7d`)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Events at or before (same forms as --since)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'The newest this many events')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;audit;export' {
            [CompletionResult]::new('--org', '--org', [CompletionResultType]::ParameterName, 'Only this organization''s events')
            [CompletionResult]::new('--event', '--event', [CompletionResultType]::ParameterName, 'Only events of this kind (`stack-created`, `auth-failure`, ...; see reference/integrations.md)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only events by this user (login)')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Events at or after: a Unix timestamp, RFC 3339, or a duration ago (`24h`, `7d`)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Events at or before (same forms as --since)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'The newest this many events')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'csv or cef')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;audit;prune' {
            [CompletionResult]::new('--older-than', '--older-than', [CompletionResultType]::ParameterName, 'How long events are kept')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;audit;help' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Print audit events as CSV or CEF (for a SIEM), newest first')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete events older than a duration (`90d`); `serve --audit-retention` does it daily')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;audit;help;ls' {
            break
        }
        'pbackend;audit;help;export' {
            break
        }
        'pbackend;audit;help;prune' {
            break
        }
        'pbackend;audit;help;help' {
            break
        }
        'pbackend;rotate-keys' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--new-master-key', '--new-master-key', [CompletionResultType]::ParameterName, 'The new master key (64 hex characters). The current one (--master-key or the key file) must still open every stack key')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Check that every key re-wraps, and change nothing')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;prune-versions' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--keep', '--keep', [CompletionResultType]::ParameterName, 'Versions of each stack to keep (the current one is always kept)')
            [CompletionResult]::new('--stack', '--stack', [CompletionResultType]::ParameterName, 'Only these stacks (ORG/PROJECT/STACK; repeatable)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Report what would be deleted, and delete nothing')
            [CompletionResult]::new('--vacuum', '--vacuum', [CompletionResultType]::ParameterName, 'Afterwards, VACUUM the database to return the freed space to the filesystem (needs the database to itself)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;verify' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--stack', '--stack', [CompletionResultType]::ParameterName, 'Only these stacks (ORG/PROJECT/STACK; repeatable)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;replay-journal' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--update', '--update', [CompletionResultType]::ParameterName, 'The update whose journal to replay (default: the stack''s latest journaled update)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the differences from the stored state, and change nothing')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;migrate-store' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database')
            [CompletionResult]::new('--master-key', '--master-key', [CompletionResultType]::ParameterName, 'Master key that wraps every stack''s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database')
            [CompletionResult]::new('--master-key-file', '--master-key-file', [CompletionResultType]::ParameterName, 'File holding the master key (64 hex characters)')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'The database to copy from: a SQLite file or a postgres:// URL. Stop every server on it first: writes made during the copy would not be in the target')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The database to copy into: a SQLite file (created) or a postgres:// URL. It must hold no stacks and no tokens')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Show no progress')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;config' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'The configuration `pbackend serve` would run with here (flags aside): each setting, its value (secrets redacted) and where it came from (env, file, default)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;config;show' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format; JSON field names are documented in reference/cli.md')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;config;help' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'The configuration `pbackend serve` would run with here (flags aside): each setting, its value (secrets redacted) and where it came from (env, file, default)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;config;help;show' {
            break
        }
        'pbackend;config;help;help' {
            break
        }
        'pbackend;completions' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Where the operational log goes: `stderr` or a file (appended to)')
            [CompletionResult]::new('--access-log', '--access-log', [CompletionResultType]::ParameterName, 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)')
            [CompletionResult]::new('--access-log-format', '--access-log-format', [CompletionResultType]::ParameterName, 'Format of the access log (default: --log-format)')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)')
            [CompletionResult]::new('--audit-log-format', '--audit-log-format', [CompletionResultType]::ParameterName, 'Format of the audit log lines (default: --log-format)')
            [CompletionResult]::new('--otel-endpoint', '--otel-endpoint', [CompletionResultType]::ParameterName, 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'pbackend;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the HTTP server')
            [CompletionResult]::new('stack', 'stack', [CompletionResultType]::ParameterValue, 'Inspect and maintain stacks on the database directly')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Export the whole instance to an archive (`--all`), for disaster recovery')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Restore a whole-instance archive (`--all`) into a database')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Take a checksummed backup into a directory, safe while the server runs (`--keep N` rotates)')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Restore a backup made by `pbackend backup` into a new database, after checking its checksum and master key')
            [CompletionResult]::new('adopt', 'adopt', [CompletionResultType]::ParameterValue, 'Adopt every stack of a DIY backend (`file://…` or `s3://…`), with its history and secrets re-encrypted for the service')
            [CompletionResult]::new('tokens', 'tokens', [CompletionResultType]::ParameterValue, 'Create, list and revoke API access tokens')
            [CompletionResult]::new('users', 'users', [CompletionResultType]::ParameterValue, 'Users: list, create, disable (their tokens stop at the next request), enable')
            [CompletionResult]::new('orgs', 'orgs', [CompletionResultType]::ParameterValue, 'Organizations, their members and default stack permission')
            [CompletionResult]::new('teams', 'teams', [CompletionResultType]::ParameterValue, 'Teams: members and the stacks they may use')
            [CompletionResult]::new('roles', 'roles', [CompletionResultType]::ParameterValue, 'Custom roles and their assignment to teams')
            [CompletionResult]::new('oidc', 'oidc', [CompletionResultType]::ParameterValue, 'OIDC trust policies for `pulumi login --oidc-token`')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read the audit log: every change and refused request, by whom, from where')
            [CompletionResult]::new('rotate-keys', 'rotate-keys', [CompletionResultType]::ParameterValue, 'Re-wrap every stack''s secrets key under a new master key, in one transaction')
            [CompletionResult]::new('prune-versions', 'prune-versions', [CompletionResultType]::ParameterValue, 'Delete old versions of stack states beyond --keep')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check every stored version, journal, key and the database itself; exit 1 on problems')
            [CompletionResult]::new('replay-journal', 'replay-journal', [CompletionResultType]::ParameterValue, 'Rebuild a stack''s state from its stored journal')
            [CompletionResult]::new('migrate-store', 'migrate-store', [CompletionResultType]::ParameterValue, 'Copy a whole instance to another database (SQLite to PostgreSQL, or back), verified')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show the effective configuration (`config show`)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pbackend;help;serve' {
            break
        }
        'pbackend;help;stack' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List stacks: resources, last update, version, the update holding it, state size')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one stack: tags, kept versions, recent history, lock, secrets key')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a stack with its history. Refused while it has resources, unless --force')
            [CompletionResult]::new('unlock', 'unlock', [CompletionResultType]::ParameterValue, 'Cancel the update holding a stack (a crashed CLI, a stuck lease), keeping the state it reached. The CLI''s `pulumi cancel`, for when the CLI cannot')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a stack''s deployment exactly as `pulumi stack export` does, for `pulumi stack import` anywhere')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Store a deployment file as a new version of a stack. Plaintext secrets (from --show-secrets exports) are encrypted with the stack''s key; secrets of another stack of this database are re-encrypted; secrets that would not decrypt are refused')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Roll a stack back to a kept version: that version''s state becomes the newest version (recorded as an import, with an audit event), and the versions in between stay in the history. Refused while an update holds the stack. The console''s "Roll back"')
            break
        }
        'pbackend;help;stack;ls' {
            break
        }
        'pbackend;help;stack;show' {
            break
        }
        'pbackend;help;stack;rm' {
            break
        }
        'pbackend;help;stack;unlock' {
            break
        }
        'pbackend;help;stack;export' {
            break
        }
        'pbackend;help;stack;import' {
            break
        }
        'pbackend;help;stack;rollback' {
            break
        }
        'pbackend;help;export' {
            break
        }
        'pbackend;help;import' {
            break
        }
        'pbackend;help;backup' {
            break
        }
        'pbackend;help;restore' {
            break
        }
        'pbackend;help;adopt' {
            break
        }
        'pbackend;help;tokens' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a token; it is printed once and only its hash is stored. With --user: a personal token (the user is created, and made a member of --org, when new). Without --user: an organization token (--org and --name) or a team token (--team and --name)')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List tokens (never their secrets)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a token by id, or every token of a user: `pbackend tokens revoke alice`. A running server refuses a revoked token from its next request')
            break
        }
        'pbackend;help;tokens;create' {
            break
        }
        'pbackend;help;tokens;ls' {
            break
        }
        'pbackend;help;tokens;revoke' {
            break
        }
        'pbackend;help;users' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List users')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Add a user (they log in with a token from `pbackend tokens create --user`)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user: every token of theirs stops at the next request; logins refused')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user again')
            break
        }
        'pbackend;help;users;ls' {
            break
        }
        'pbackend;help;users;create' {
            break
        }
        'pbackend;help;users;disable' {
            break
        }
        'pbackend;help;users;enable' {
            break
        }
        'pbackend;help;orgs' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List organizations')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create an organization')
            [CompletionResult]::new('set-default-permission', 'set-default-permission', [CompletionResultType]::ParameterValue, 'Set what every member may do with every stack (grants add to it)')
            [CompletionResult]::new('members', 'members', [CompletionResultType]::ParameterValue, 'List an organization''s members')
            [CompletionResult]::new('set-member', 'set-member', [CompletionResultType]::ParameterValue, 'Add a member, or change a member''s role (the user is created when new)')
            [CompletionResult]::new('remove-member', 'remove-member', [CompletionResultType]::ParameterValue, 'Remove a member (and their places in the organization''s teams)')
            break
        }
        'pbackend;help;orgs;ls' {
            break
        }
        'pbackend;help;orgs;create' {
            break
        }
        'pbackend;help;orgs;set-default-permission' {
            break
        }
        'pbackend;help;orgs;members' {
            break
        }
        'pbackend;help;orgs;set-member' {
            break
        }
        'pbackend;help;orgs;remove-member' {
            break
        }
        'pbackend;help;teams' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List an organization''s teams')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a team')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a team (its tokens are revoked, its stack grants removed)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a team: members and stacks')
            [CompletionResult]::new('add-member', 'add-member', [CompletionResultType]::ParameterValue, 'Add an organization member to a team')
            [CompletionResult]::new('remove-member', 'remove-member', [CompletionResultType]::ParameterValue, 'Remove a member from a team')
            [CompletionResult]::new('grant', 'grant', [CompletionResultType]::ParameterValue, 'Give the team a permission on a stack of its organization (none removes it)')
            break
        }
        'pbackend;help;teams;ls' {
            break
        }
        'pbackend;help;teams;create' {
            break
        }
        'pbackend;help;teams;delete' {
            break
        }
        'pbackend;help;teams;show' {
            break
        }
        'pbackend;help;teams;add-member' {
            break
        }
        'pbackend;help;teams;remove-member' {
            break
        }
        'pbackend;help;teams;grant' {
            break
        }
        'pbackend;help;roles' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List an organization''s custom roles')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a custom role granting scopes (stack:read, stack:write, team:create, ...)')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Delete a custom role (with --force also when assigned)')
            [CompletionResult]::new('assign', 'assign', [CompletionResultType]::ParameterValue, 'Assign a role to a team (replacing its role), or with --none remove it')
            break
        }
        'pbackend;help;roles;ls' {
            break
        }
        'pbackend;help;roles;create' {
            break
        }
        'pbackend;help;roles;rm' {
            break
        }
        'pbackend;help;roles;assign' {
            break
        }
        'pbackend;help;oidc' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List trust policies: which identity providers'' tokens an organization exchanges')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Trust an issuer''s ID tokens for `pulumi login --oidc-token`')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Remove a trust policy')
            break
        }
        'pbackend;help;oidc;ls' {
            break
        }
        'pbackend;help;oidc;add' {
            break
        }
        'pbackend;help;oidc;rm' {
            break
        }
        'pbackend;help;audit' {
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Print audit events as CSV or CEF (for a SIEM), newest first')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete events older than a duration (`90d`); `serve --audit-retention` does it daily')
            break
        }
        'pbackend;help;audit;ls' {
            break
        }
        'pbackend;help;audit;export' {
            break
        }
        'pbackend;help;audit;prune' {
            break
        }
        'pbackend;help;rotate-keys' {
            break
        }
        'pbackend;help;prune-versions' {
            break
        }
        'pbackend;help;verify' {
            break
        }
        'pbackend;help;replay-journal' {
            break
        }
        'pbackend;help;migrate-store' {
            break
        }
        'pbackend;help;config' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'The configuration `pbackend serve` would run with here (flags aside): each setting, its value (secrets redacted) and where it came from (env, file, default)')
            break
        }
        'pbackend;help;config;show' {
            break
        }
        'pbackend;help;completions' {
            break
        }
        'pbackend;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
