#!/bin/sh
# Create the secret files docker-compose.yml mounts under /run/secrets (random values; the Slack
# URL is a placeholder to replace). Existing files are kept. Usage: deploy/make-secrets.sh [DIR]
set -eu
dir=${1:-secrets}
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
rand() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
[ -s "$dir/pii_hmac_key" ] || rand > "$dir/pii_hmac_key"
[ -s "$dir/sidecar_tokens" ] || printf 'client:%s\n' "$(rand)" > "$dir/sidecar_tokens"
[ -s "$dir/dashboard_token" ] || rand > "$dir/dashboard_token"
[ -s "$dir/grafana_admin_password" ] || rand > "$dir/grafana_admin_password"
[ -s "$dir/slack_webhook_url" ] || echo "https://hooks.slack.com/services/REPLACE/ME/NOW" > "$dir/slack_webhook_url"
# The containers run as uid 10001 (driftline) and must be able to read the bind-mounted files.
chmod 644 "$dir"/*
echo "secrets in $dir: $(ls "$dir" | tr '\n' ' ')"
