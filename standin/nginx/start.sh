#!/bin/sh
# Renders the proxy target from BACKEND_HOST, as the production image does with envsubst.
set -eu
case "${BACKEND_HOST:-}" in
  "" | *[!A-Za-z0-9._-]*) echo "nginx: BACKEND_HOST is empty or not a host name" >&2; exit 1 ;;
esac
sed "s/@BACKEND_HOST@/$BACKEND_HOST/g" /etc/nginx/i2m.conf.template > /tmp/nginx.conf
exec nginx -c /tmp/nginx.conf -g 'daemon off;'
