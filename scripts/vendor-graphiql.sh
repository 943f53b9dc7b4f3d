#!/usr/bin/env bash
# Refreshes the GraphiQL page's vendored assets in api/assets/graphiql/ from the npm
# registry: the pinned versions below, fetched with `npm pack` into a temporary directory,
# their files and licenses copied, and SHA256SUMS rewritten. The gateway embeds these
# files (api/src/graphiql.rs); nothing is fetched at build or run time. To move a version,
# change it here, run this script, and commit the directory.
set -euo pipefail
cd "$(dirname "$0")/.."

REACT=18.3.1
REACT_DOM=18.3.1
GRAPHIQL=3.9.0
GRAPHQL_WS=5.16.2

dest=api/assets/graphiql
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "react@$REACT" "react-dom@$REACT_DOM" \
  "graphiql@$GRAPHIQL" "graphql-ws@$GRAPHQL_WS" >/dev/null)
for package in react-$REACT react-dom-$REACT_DOM graphiql-$GRAPHIQL graphql-ws-$GRAPHQL_WS; do
  mkdir -p "$work/$package"
  tar -xzf "$work/$package.tgz" -C "$work/$package"
done

rm -rf "$dest"
mkdir -p "$dest"
copy() { install -m 0644 "$work/$1" "$dest/$2"; }
copy "react-$REACT/package/umd/react.production.min.js" react.production.min.js
copy "react-$REACT/package/LICENSE" react.LICENSE
copy "react-dom-$REACT_DOM/package/umd/react-dom.production.min.js" react-dom.production.min.js
copy "react-dom-$REACT_DOM/package/LICENSE" react-dom.LICENSE
copy "graphiql-$GRAPHIQL/package/graphiql.min.js" graphiql.min.js
copy "graphiql-$GRAPHIQL/package/graphiql.min.css" graphiql.min.css
copy "graphiql-$GRAPHIQL/package/LICENSE" graphiql.LICENSE
copy "graphql-ws-$GRAPHQL_WS/package/umd/graphql-ws.min.js" graphql-ws.min.js
copy "graphql-ws-$GRAPHQL_WS/package/LICENSE.md" graphql-ws.LICENSE

cat > "$dest/VERSIONS" <<VERSIONS
react $REACT
react-dom $REACT_DOM
graphiql $GRAPHIQL
graphql-ws $GRAPHQL_WS
VERSIONS

(cd "$dest" && sha256sum -- *.js *.css *.LICENSE VERSIONS > SHA256SUMS)
echo "vendored into $dest:"
cat "$dest/VERSIONS"
