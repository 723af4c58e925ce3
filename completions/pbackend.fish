# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_pbackend_global_optspecs
    string join \n log-format= log-level= log-file= access-log= access-log-format= audit-log= audit-log-format= otel-endpoint= config= h/help V/version
end

function __fish_pbackend_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_pbackend_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_pbackend_using_subcommand
    set -l cmd (__fish_pbackend_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c pbackend -n "__fish_pbackend_needs_command" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_needs_command" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_needs_command" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_needs_command" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_needs_command" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_needs_command" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_needs_command" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_needs_command" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_needs_command" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pbackend -n "__fish_pbackend_needs_command" -s V -l version -d 'Print version'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "serve" -d 'Run the HTTP server'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "stack" -d 'Inspect and maintain stacks on the database directly'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "export" -d 'Export the whole instance to an archive (`--all`), for disaster recovery'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "import" -d 'Restore a whole-instance archive (`--all`) into a database'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "backup" -d 'Take a checksummed backup into a directory, safe while the server runs (`--keep N` rotates)'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "restore" -d 'Restore a backup made by `pbackend backup` into a new database, after checking its checksum and master key'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "adopt" -d 'Adopt every stack of a DIY backend (`file://…` or `s3://…`), with its history and secrets re-encrypted for the service'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "tokens" -d 'Create, list and revoke API access tokens'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "users" -d 'Users: list, create, disable (their tokens stop at the next request), enable'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "orgs" -d 'Organizations, their members and default stack permission'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "teams" -d 'Teams: members and the stacks they may use'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "roles" -d 'Custom roles and their assignment to teams'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "oidc" -d 'OIDC trust policies for `pulumi login --oidc-token`'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "audit" -d 'Read the audit log: every change and refused request, by whom, from where'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "rotate-keys" -d 'Re-wrap every stack\'s secrets key under a new master key, in one transaction'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "prune-versions" -d 'Delete old versions of stack states beyond --keep'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "verify" -d 'Check every stored version, journal, key and the database itself; exit 1 on problems'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "replay-journal" -d 'Rebuild a stack\'s state from its stored journal'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "migrate-store" -d 'Copy a whole instance to another database (SQLite to PostgreSQL, or back), verified'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "config" -d 'Show the effective configuration (`config show`)'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c pbackend -n "__fish_pbackend_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l addr -d 'Address to listen on' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l tls-cert -d 'Serve HTTPS with this PEM certificate chain (leaf first). It and --tls-key are loaded again when either file changes on disk, and on SIGHUP' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l tls-key -d 'The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l console -d 'Serve the web console at the API\'s address (`--console=false` turns it off). Point the CLI\'s links at it with PULUMI_CONSOLE_DOMAIN=<host:port>, printed at start' -r -f -a "true\t''
false\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l trusted-proxies -d 'Proxies (addresses or networks, comma-separated: `10.0.0.0/8,192.168.1.10`) whose X-Forwarded-For / X-Real-IP headers name the client. The client\'s address then goes to the logs, audit events and leases; from anyone else those headers are ignored. Default: none' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l shutdown-grace -d 'On SIGTERM or SIGINT: stop accepting, fail /readyz, and give requests in flight this long to finish before their connections are closed (the CLI retries what was cut)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l auth-mode -d 'How users log in. API tokens always work' -r -f -a "tokens\t'API tokens only (personal, organization and team tokens, the single-tenant token)'
oidc\t'Also browser login through an OpenID Connect provider (`pulumi login` opens it)'
google\t'The same with Google\'s issuer preset (restrict with --google-hosted-domain)'
jwt\t'Also JWTs presented as the access token, verified with the --jwt-* key'"
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l public-url -d 'The URL users and the identity provider reach this server at (default: the listening address); the provider redirects to <URL>/api/auth/callback' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l oidc-issuer -d 'The OpenID provider\'s issuer URL (its discovery document is at <issuer>/.well-known/openid-configuration)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l oidc-client-id -d 'This server\'s client id at the provider' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l oidc-client-secret -d 'The client secret (prefer the environment variable or --oidc-client-secret-file)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l oidc-client-secret-file -d 'A file holding the client secret' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l oidc-scopes -d 'Scopes to ask for besides `openid` (space-separated)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l oidc-login-claim -d 'The ID-token claim whose value becomes the user\'s login' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l oidc-groups-claim -d 'The claim listing the user\'s groups (for --group-map)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l google-hosted-domain -d 'Google: only accounts of this Workspace domain (the `hd` claim)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l group-map -d 'Where members of an identity-provider group go: GROUP=org:ORG:ROLE (member, admin, billing-manager) or GROUP=team:ORG/TEAM. Repeat for more; mapped places follow the groups at every login and refresh' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-hmac-secret -d 'JWT mode: an HMAC secret (prefer the environment variable or the file flag)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-hmac-secret-file -d 'JWT mode: a file holding the HMAC secret' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-public-key-file -d 'JWT mode: an RSA or EC public key (PEM file)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-jwks-url -d 'JWT mode: a JWKS URL (keys fetched again when an unknown key id appears)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-issuer -d 'JWT mode: the required `iss`' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-audience -d 'JWT mode: the required `aud`' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-login-claim -d 'JWT mode: the claim that names the user' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l jwt-groups-claim -d 'JWT mode: the claim listing the user\'s groups' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l login-token-ttl -d 'Lifetime of the access token a browser login or a refresh issues' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l refresh-token-ttl -d 'Lifetime of refresh tokens' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l single-tenant-token -d 'The API token that grants access (as `--user`). When not given, the token from the previous start is kept; on a new database one is generated and printed once' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l org -d 'The organization stacks live in (the CLI\'s default organization)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l user -d 'The user name the API token acts as' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l audit-retention -d 'How long audit events are kept (a duration: 365d, 90d, ...); older ones are deleted daily. `0` keeps them forever' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l management-addr -d 'Address of the management listener (`/healthz`, `/readyz`, `/metrics`); off unless given. Keep it off the public network' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l webhook-max-attempts -d 'Attempts per webhook delivery before it is given up (retries back off from 1 s, doubling, up to an hour apart)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l webhook-timeout -d 'The longest one webhook delivery may take' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l backup-to -d 'Take scheduled backups into this directory or `s3://bucket/prefix` (S3 credentials, region and endpoint from the AWS_* environment variables): `pbackend-<UTC time>.pbk` with a `.sha256`, as `pbackend backup` makes them; restore with `pbackend restore`. Off unless given. With replicas on PostgreSQL, give it to one of them' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l backup-schedule -d 'How often to back up to --backup-to. The first backup is due one interval after the newest one already there (at once when there is none)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l backup-keep -d 'Backups to keep in --backup-to; the oldest beyond this are deleted after each successful backup (0 keeps all)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l lease-duration -d 'How long an update\'s lease lasts without renewal (seconds, or with s/m/h). The CLI renews every 2.5 minutes assuming 5; keep it at 5m or more outside tests' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l max-state-versions -d 'Versions of each stack\'s state to keep (older ones are deleted)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l delta-cutoff-bytes -d 'Checkpoints smaller than this are uploaded whole instead of as deltas' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l max-state-bytes -d 'Largest decompressed body accepted for a whole deployment (checkpoints, import). Other bodies are capped at 32 MiB and journal batches at 64 MiB (or this, if smaller)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l max-journal-version -d 'Highest journal protocol offered to a CLI that asks for journaling (CLI v3.277+ asks for 2, earlier ones for 1); 0 makes every CLI send checkpoints instead' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l db-pool-size -d 'Connections to a PostgreSQL database held open at most (each write is one transaction on one of them)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l max-connections -d 'Open client connections at most; further ones wait until one closes' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l max-concurrent-requests -d 'Requests handled at once; more wait up to --request-queue-timeout, then get 503' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l request-queue-timeout -d 'How long a request waits for one of those slots (seconds, or with s/m/h)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l max-inflight-body-bytes -d 'Request-body bytes (as received and decompressed) held at once across all requests; beyond it requests get 503 and are retried. Default and minimum: 1.25 × --max-state-bytes' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l header-read-timeout -d 'A client must send a request\'s headers within this' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l body-idle-timeout -d 'A request body may pause this long between two pieces' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l body-deadline -d 'A request body must arrive whole within this' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l writer-queue -d 'Writes waiting for the database writer at most; a write that finds the queue full for 10 s gets 503' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l rate-limit -d 'Reads (GET/HEAD) each credential may make, per window: `100/10s,600/1m` (the service\'s published limits), or `off`. Over it: 429 with Retry-After, which the CLI honours. Writes and calls under an update\'s lease are never limited; each replica counts its own' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l durability -d 'What an acknowledged write survives: `normal` survives the process being killed; `full` also survives an OS crash or power loss, at the cost of an fsync per write (see reference/reliability.md for the measured cost)' -r -f -a "normal\t''
full\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l insecure-http -d 'Serve plain HTTP on a non-loopback --addr. Refused without this flag: tokens and secrets would cross the network in clear. Give it when a proxy in front terminates TLS (and set --trusted-proxies to that proxy)'
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -l webhooks-allow-loopback -d 'Let webhooks deliver to loopback addresses (refused by default, as are link-local and cloud-metadata addresses, always)'
complete -c pbackend -n "__fish_pbackend_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "ls" -d 'List stacks: resources, last update, version, the update holding it, state size'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "show" -d 'Show one stack: tags, kept versions, recent history, lock, secrets key'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "rm" -d 'Delete a stack with its history. Refused while it has resources, unless --force'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "unlock" -d 'Cancel the update holding a stack (a crashed CLI, a stuck lease), keeping the state it reached. The CLI\'s `pulumi cancel`, for when the CLI cannot'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "export" -d 'Write a stack\'s deployment exactly as `pulumi stack export` does, for `pulumi stack import` anywhere'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "import" -d 'Store a deployment file as a new version of a stack. Plaintext secrets (from --show-secrets exports) are encrypted with the stack\'s key; secrets of another stack of this database are re-encrypted; secrets that would not decrypt are refused'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "rollback" -d 'Roll a stack back to a kept version: that version\'s state becomes the newest version (recorded as an import, with an audit event), and the versions in between stay in the history. Refused while an update holds the stack. The console\'s "Roll back"'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and not __fish_seen_subcommand_from ls show rm unlock export import rollback help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l org -d 'Only this organization' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l project -d 'Only this project' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l tag -d 'Only stacks with this tag (NAME or NAME=VALUE)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -l force -d 'Delete even with resources in its state, or while an update holds it'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from unlock" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l version -d 'A kept older version instead of the current state' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -s o -l output -d 'Write to this file instead of stdout' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -l show-secrets -d 'Decrypt service-encrypted secrets (needs the master key)'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -l create -d 'Create the stack when it does not exist'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l to-version -d 'The kept version whose state to restore (`pbackend stack show` lists them)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List stacks: resources, last update, version, the update holding it, state size'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one stack: tags, kept versions, recent history, lock, secrets key'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Delete a stack with its history. Refused while it has resources, unless --force'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "unlock" -d 'Cancel the update holding a stack (a crashed CLI, a stuck lease), keeping the state it reached. The CLI\'s `pulumi cancel`, for when the CLI cannot'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write a stack\'s deployment exactly as `pulumi stack export` does, for `pulumi stack import` anywhere'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "import" -d 'Store a deployment file as a new version of a stack. Plaintext secrets (from --show-secrets exports) are encrypted with the stack\'s key; secrets of another stack of this database are re-encrypted; secrets that would not decrypt are refused'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Roll a stack back to a kept version: that version\'s state becomes the newest version (recorded as an import, with an audit event), and the versions in between stay in the history. Refused while an update holds the stack. The console\'s "Roll back"'
complete -c pbackend -n "__fish_pbackend_using_subcommand stack; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -s o -l output -d 'The archive to write (gzip; format in reference/cli.md)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -l all -d 'Export the whole instance (every stack with its versions, history, tags, events, journals and wrapped keys, and the access tokens)'
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand export" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l merge -d 'How to merge into a database that already has stacks (default: refuse)' -r -f -a "skip-existing\t'Add the stacks whose names are free; leave existing ones alone'"
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -l all -d 'Import a whole-instance archive made by `pbackend export --all`'
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l to -d 'Where to write the backup: a directory (created if missing) or `s3://bucket/prefix` (S3 credentials, region and endpoint from the AWS_* environment variables). It gets an archive `pbackend-<UTC time>.pbk` and its `.sha256`. Safe while the server runs: the backup is one consistent snapshot' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l keep -d 'Complete backups to keep in DEST; after a successful backup the oldest beyond this are deleted. 0 keeps them all' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand backup" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand restore" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l org -d 'The organization the stacks go to' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l passphrase-file -d 'A file holding the passphrase of passphrase-encrypted stacks (else PULUMI_CONFIG_PASSPHRASE, as the CLI reads it)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l public-url -d 'The URL users `pulumi login` to (the server\'s --public-url); adopted states name it as their secrets service, as the CLI would' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -l dry-run -d 'Read and check everything (passphrase included), write nothing'
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand adopt" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -f -a "create" -d 'Create a token; it is printed once and only its hash is stored. With --user: a personal token (the user is created, and made a member of --org, when new). Without --user: an organization token (--org and --name) or a team token (--team and --name)'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -f -a "ls" -d 'List tokens (never their secrets)'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -f -a "revoke" -d 'Revoke a token by id, or every token of a user: `pbackend tokens revoke alice`. A running server refuses a revoked token from its next request'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and not __fish_seen_subcommand_from create ls revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l user -d 'The user a personal token acts as (shown by `pulumi whoami`)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l org -d 'The organization: where a new user becomes a member, or whose token this is' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l role -d 'A new user\'s role in --org' -r -f -a "member\t''
admin\t''
billing-manager\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l team -d 'A team token for ORG/TEAM' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l name -d 'An organization or team token\'s name (unique in its organization)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l description -d 'What the token is for' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l expires -d 'Lifetime, e.g. 90d or 12h; without it the token does not expire' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l admin -d 'An organization token with admin rights'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -l refresh -d 'Also print a refresh token, exchangeable at /api/oauth/token for new access tokens (personal tokens; the access token then lives --expires, default 1h)'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l user -d 'Only this user\'s tokens' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l org -d 'Only this organization\'s tokens' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l team -d 'Only this team\'s tokens (ORG/TEAM)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l user -d 'Revoke every token of this user' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l team -d 'Revoke every token of this team (ORG/TEAM)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a token; it is printed once and only its hash is stored. With --user: a personal token (the user is created, and made a member of --org, when new). Without --user: an organization token (--org and --name) or a team token (--team and --name)'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List tokens (never their secrets)'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a token by id, or every token of a user: `pbackend tokens revoke alice`. A running server refuses a revoked token from its next request'
complete -c pbackend -n "__fish_pbackend_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -f -a "ls" -d 'List users'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -f -a "create" -d 'Add a user (they log in with a token from `pbackend tokens create --user`)'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -f -a "disable" -d 'Disable a user: every token of theirs stops at the next request; logins refused'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -f -a "enable" -d 'Enable a disabled user again'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and not __fish_seen_subcommand_from ls create disable enable help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List users'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "create" -d 'Add a user (they log in with a token from `pbackend tokens create --user`)'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Disable a user: every token of theirs stops at the next request; logins refused'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Enable a disabled user again'
complete -c pbackend -n "__fish_pbackend_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -f -a "ls" -d 'List organizations'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -f -a "create" -d 'Create an organization'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -f -a "set-default-permission" -d 'Set what every member may do with every stack (grants add to it)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -f -a "members" -d 'List an organization\'s members'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -f -a "set-member" -d 'Add a member, or change a member\'s role (the user is created when new)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -f -a "remove-member" -d 'Remove a member (and their places in the organization\'s teams)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and not __fish_seen_subcommand_from ls create set-default-permission members set-member remove-member help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-default-permission" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from members" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l role -r -f -a "member\t''
admin\t''
billing-manager\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from set-member" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from remove-member" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List organizations'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create an organization'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from help" -f -a "set-default-permission" -d 'Set what every member may do with every stack (grants add to it)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from help" -f -a "members" -d 'List an organization\'s members'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from help" -f -a "set-member" -d 'Add a member, or change a member\'s role (the user is created when new)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from help" -f -a "remove-member" -d 'Remove a member (and their places in the organization\'s teams)'
complete -c pbackend -n "__fish_pbackend_using_subcommand orgs; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "ls" -d 'List an organization\'s teams'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "create" -d 'Create a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "delete" -d 'Delete a team (its tokens are revoked, its stack grants removed)'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "show" -d 'Show a team: members and stacks'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "add-member" -d 'Add an organization member to a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "remove-member" -d 'Remove a member from a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "grant" -d 'Give the team a permission on a stack of its organization (none removes it)'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and not __fish_seen_subcommand_from ls create delete show add-member remove-member grant help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l description -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -l admin -d 'As a team admin'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from add-member" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from remove-member" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from grant" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List an organization\'s teams'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a team (its tokens are revoked, its stack grants removed)'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a team: members and stacks'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "add-member" -d 'Add an organization member to a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "remove-member" -d 'Remove a member from a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "grant" -d 'Give the team a permission on a stack of its organization (none removes it)'
complete -c pbackend -n "__fish_pbackend_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -f -a "ls" -d 'List an organization\'s custom roles'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -f -a "create" -d 'Create a custom role granting scopes (stack:read, stack:write, team:create, ...)'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -f -a "rm" -d 'Delete a custom role (with --force also when assigned)'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -f -a "assign" -d 'Assign a role to a team (replacing its role), or with --none remove it'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and not __fish_seen_subcommand_from ls create rm assign help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l scopes -d 'Scopes, comma-separated' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l description -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -l force
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -l none
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from assign" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List an organization\'s custom roles'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a custom role granting scopes (stack:read, stack:write, team:create, ...)'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Delete a custom role (with --force also when assigned)'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from help" -f -a "assign" -d 'Assign a role to a team (replacing its role), or with --none remove it'
complete -c pbackend -n "__fish_pbackend_using_subcommand roles; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -f -a "ls" -d 'List trust policies: which identity providers\' tokens an organization exchanges'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -f -a "add" -d 'Trust an issuer\'s ID tokens for `pulumi login --oidc-token`'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -f -a "rm" -d 'Remove a trust policy'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and not __fish_seen_subcommand_from ls add rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l org -d 'Only this organization\'s policies' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l org -d 'The organization whose tokens the exchange issues (`pulumi login --oidc-org`)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l issuer -d 'The token\'s `iss` (its keys come from the issuer\'s OpenID discovery)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l audience -d 'The `aud` the token must carry (default: urn:pulumi:org:<org>)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l token-kind -d 'What token the exchange issues' -r -f -a "organization\t''
team\t''
personal\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l team -d 'The team of a team token' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l user -d 'The user of a personal token' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l rule -d 'CLAIM=VALUE the token must carry (VALUE may end in `*`); repeat for more' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l max-expiration -d 'The longest lifetime of an issued token' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List trust policies: which identity providers\' tokens an organization exchanges'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from help" -f -a "add" -d 'Trust an issuer\'s ID tokens for `pulumi login --oidc-token`'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a trust policy'
complete -c pbackend -n "__fish_pbackend_using_subcommand oidc; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -f -a "ls" -d 'List audit events, newest first'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -f -a "export" -d 'Print audit events as CSV or CEF (for a SIEM), newest first'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -f -a "prune" -d 'Delete events older than a duration (`90d`); `serve --audit-retention` does it daily'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and not __fish_seen_subcommand_from ls export prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l org -d 'Only this organization\'s events' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l event -d 'Only events of this kind (`stack-created`, `auth-failure`, ...; see reference/integrations.md)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l user -d 'Only events by this user (login)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l since -d 'Events at or after: a Unix timestamp, RFC 3339, or a duration ago (`24h`, `7d`)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l until -d 'Events at or before (same forms as --since)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l limit -d 'The newest this many events' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l org -d 'Only this organization\'s events' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l event -d 'Only events of this kind (`stack-created`, `auth-failure`, ...; see reference/integrations.md)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l user -d 'Only events by this user (login)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l since -d 'Events at or after: a Unix timestamp, RFC 3339, or a duration ago (`24h`, `7d`)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l until -d 'Events at or before (same forms as --since)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l limit -d 'The newest this many events' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l format -d 'csv or cef' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l older-than -d 'How long events are kept' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List audit events, newest first'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "export" -d 'Print audit events as CSV or CEF (for a SIEM), newest first'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Delete events older than a duration (`90d`); `serve --audit-retention` does it daily'
complete -c pbackend -n "__fish_pbackend_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l new-master-key -d 'The new master key (64 hex characters). The current one (--master-key or the key file) must still open every stack key' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -l dry-run -d 'Check that every key re-wraps, and change nothing'
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand rotate-keys" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l keep -d 'Versions of each stack to keep (the current one is always kept)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l stack -d 'Only these stacks (ORG/PROJECT/STACK; repeatable)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l dry-run -d 'Report what would be deleted, and delete nothing'
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -l vacuum -d 'Afterwards, VACUUM the database to return the freed space to the filesystem (needs the database to itself)'
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand prune-versions" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l stack -d 'Only these stacks (ORG/PROJECT/STACK; repeatable)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand verify" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l update -d 'The update whose journal to replay (default: the stack\'s latest journaled update)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -l dry-run -d 'Print the differences from the stored state, and change nothing'
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand replay-journal" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l db -d 'The database: a SQLite file (created on first start), or a PostgreSQL URL (`postgres://user:password@host:5432/dbname`) for several servers sharing one database' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l master-key -d 'Master key that wraps every stack\'s secrets key: 64 hex characters (32 bytes). When neither this nor --master-key-file is given, the key is read from `<db>.key`, which `serve` creates on a new database' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l master-key-file -d 'File holding the master key (64 hex characters)' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l from -d 'The database to copy from: a SQLite file or a postgres:// URL. Stop every server on it first: writes made during the copy would not be in the target' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l to -d 'The database to copy into: a SQLite file (created) or a postgres:// URL. It must hold no stacks and no tokens' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -s q -l quiet -d 'Show no progress'
complete -c pbackend -n "__fish_pbackend_using_subcommand migrate-store" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -f -a "show" -d 'The configuration `pbackend serve` would run with here (flags aside): each setting, its value (secrets redacted) and where it came from (env, file, default)'
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and not __fish_seen_subcommand_from show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l output -d 'Output format; JSON field names are documented in reference/cli.md' -r -f -a "table\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'The configuration `pbackend serve` would run with here (flags aside): each setting, its value (secrets redacted) and where it came from (env, file, default)'
complete -c pbackend -n "__fish_pbackend_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l log-format -d 'Log format' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l log-level -d 'Log filter: error, warn, info, debug, trace, or a tracing directive such as `pbackend=debug`. Successful requests are logged at debug' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l log-file -d 'Where the operational log goes: `stderr` or a file (appended to)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l access-log -d 'Where the access log (one line per request) goes: `stderr` (with the operational log, answers at debug level), `off`, or a file of its own (every request)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l access-log-format -d 'Format of the access log (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l audit-log -d 'Where audit events also go as log lines, once their change has committed: `off`, `stderr` or a file (for a log shipper or SIEM; the audit log is always in the database too)' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l audit-log-format -d 'Format of the audit log lines (default: --log-format)' -r -f -a "text\t''
json\t''"
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l otel-endpoint -d 'Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g. `http://otel-collector:4318`: a span per request with child spans for its store transactions. Off unless given' -r
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -l config -d 'A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`, `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment variables override it; `pbackend config show` prints the result' -r -F
complete -c pbackend -n "__fish_pbackend_using_subcommand completions" -s h -l help -d 'Print help'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "serve" -d 'Run the HTTP server'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "stack" -d 'Inspect and maintain stacks on the database directly'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "export" -d 'Export the whole instance to an archive (`--all`), for disaster recovery'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "import" -d 'Restore a whole-instance archive (`--all`) into a database'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "backup" -d 'Take a checksummed backup into a directory, safe while the server runs (`--keep N` rotates)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "restore" -d 'Restore a backup made by `pbackend backup` into a new database, after checking its checksum and master key'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "adopt" -d 'Adopt every stack of a DIY backend (`file://…` or `s3://…`), with its history and secrets re-encrypted for the service'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "tokens" -d 'Create, list and revoke API access tokens'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "users" -d 'Users: list, create, disable (their tokens stop at the next request), enable'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "orgs" -d 'Organizations, their members and default stack permission'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "teams" -d 'Teams: members and the stacks they may use'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "roles" -d 'Custom roles and their assignment to teams'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "oidc" -d 'OIDC trust policies for `pulumi login --oidc-token`'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "audit" -d 'Read the audit log: every change and refused request, by whom, from where'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "rotate-keys" -d 'Re-wrap every stack\'s secrets key under a new master key, in one transaction'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "prune-versions" -d 'Delete old versions of stack states beyond --keep'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "verify" -d 'Check every stored version, journal, key and the database itself; exit 1 on problems'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "replay-journal" -d 'Rebuild a stack\'s state from its stored journal'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "migrate-store" -d 'Copy a whole instance to another database (SQLite to PostgreSQL, or back), verified'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "config" -d 'Show the effective configuration (`config show`)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "completions" -d 'Print shell completions'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and not __fish_seen_subcommand_from serve stack export import backup restore adopt tokens users orgs teams roles oidc audit rotate-keys prune-versions verify replay-journal migrate-store config completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from stack" -f -a "ls" -d 'List stacks: resources, last update, version, the update holding it, state size'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from stack" -f -a "show" -d 'Show one stack: tags, kept versions, recent history, lock, secrets key'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from stack" -f -a "rm" -d 'Delete a stack with its history. Refused while it has resources, unless --force'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from stack" -f -a "unlock" -d 'Cancel the update holding a stack (a crashed CLI, a stuck lease), keeping the state it reached. The CLI\'s `pulumi cancel`, for when the CLI cannot'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from stack" -f -a "export" -d 'Write a stack\'s deployment exactly as `pulumi stack export` does, for `pulumi stack import` anywhere'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from stack" -f -a "import" -d 'Store a deployment file as a new version of a stack. Plaintext secrets (from --show-secrets exports) are encrypted with the stack\'s key; secrets of another stack of this database are re-encrypted; secrets that would not decrypt are refused'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from stack" -f -a "rollback" -d 'Roll a stack back to a kept version: that version\'s state becomes the newest version (recorded as an import, with an audit event), and the versions in between stay in the history. Refused while an update holds the stack. The console\'s "Roll back"'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from tokens" -f -a "create" -d 'Create a token; it is printed once and only its hash is stored. With --user: a personal token (the user is created, and made a member of --org, when new). Without --user: an organization token (--org and --name) or a team token (--team and --name)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from tokens" -f -a "ls" -d 'List tokens (never their secrets)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from tokens" -f -a "revoke" -d 'Revoke a token by id, or every token of a user: `pbackend tokens revoke alice`. A running server refuses a revoked token from its next request'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from users" -f -a "ls" -d 'List users'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from users" -f -a "create" -d 'Add a user (they log in with a token from `pbackend tokens create --user`)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from users" -f -a "disable" -d 'Disable a user: every token of theirs stops at the next request; logins refused'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from users" -f -a "enable" -d 'Enable a disabled user again'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from orgs" -f -a "ls" -d 'List organizations'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from orgs" -f -a "create" -d 'Create an organization'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from orgs" -f -a "set-default-permission" -d 'Set what every member may do with every stack (grants add to it)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from orgs" -f -a "members" -d 'List an organization\'s members'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from orgs" -f -a "set-member" -d 'Add a member, or change a member\'s role (the user is created when new)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from orgs" -f -a "remove-member" -d 'Remove a member (and their places in the organization\'s teams)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "ls" -d 'List an organization\'s teams'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "create" -d 'Create a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "delete" -d 'Delete a team (its tokens are revoked, its stack grants removed)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "show" -d 'Show a team: members and stacks'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "add-member" -d 'Add an organization member to a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "remove-member" -d 'Remove a member from a team'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "grant" -d 'Give the team a permission on a stack of its organization (none removes it)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from roles" -f -a "ls" -d 'List an organization\'s custom roles'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from roles" -f -a "create" -d 'Create a custom role granting scopes (stack:read, stack:write, team:create, ...)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from roles" -f -a "rm" -d 'Delete a custom role (with --force also when assigned)'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from roles" -f -a "assign" -d 'Assign a role to a team (replacing its role), or with --none remove it'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from oidc" -f -a "ls" -d 'List trust policies: which identity providers\' tokens an organization exchanges'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from oidc" -f -a "add" -d 'Trust an issuer\'s ID tokens for `pulumi login --oidc-token`'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from oidc" -f -a "rm" -d 'Remove a trust policy'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "ls" -d 'List audit events, newest first'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "export" -d 'Print audit events as CSV or CEF (for a SIEM), newest first'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "prune" -d 'Delete events older than a duration (`90d`); `serve --audit-retention` does it daily'
complete -c pbackend -n "__fish_pbackend_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'The configuration `pbackend serve` would run with here (flags aside): each setting, its value (secrets redacted) and where it came from (env, file, default)'
