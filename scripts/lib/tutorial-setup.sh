# Sourced by the load scripts: API helpers and the tutorial's setup through the API.
# Needs BASE (the server's URL), WORK (a scratch folder) and ARBITER_ADMIN_KEY; curl, jq.

# ---- setup helpers ----------------------------------------------------------------------
# api KEY METHOD PATH [BODY]: one call; fails the script on a non-2xx answer.
api() {
  local key=$1 method=$2 path=$3 body=${4:-}
  curl -sS --fail-with-body --max-time 30 -X "$method" "$BASE$path" \
    -H "X-API-Key: $key" -H "Content-Type: application/json" ${body:+-d "$body"}
}

# bulk KEY PATH BODIES_FILE: POSTs each line of BODIES_FILE (one JSON body a line) to PATH
# in order, over one keep-alive connection (a curl config with a `next` per body), and
# prints one response a line. Fails unless every answer is 2xx.
bulk() {
  local key=$1 path=$2 bodies=$3 config="$WORK/bulk.curlrc"
  : >"$config"
  local sep=""
  while IFS= read -r body; do
    body=${body//\\/\\\\}
    printf '%s' "$sep" >>"$config"
    sep=$'next\n'
    printf 'url = "%s"\nrequest = "POST"\nheader = "X-API-Key: %s"\nheader = "Content-Type: application/json"\ndata = "%s"\nwrite-out = "\\n%%{http_code}\\n"\nsilent\n' \
      "$BASE$path" "$key" "${body//\"/\\\"}" >>"$config"
  done <"$bodies"
  curl --max-time 300 -K "$config" >"$WORK/bulk.out"
  # Responses alternate: body line, status line.
  if awk 'NR % 2 == 0 && ($0 < 200 || $0 > 299) { bad = 1 } END { exit !bad }' "$WORK/bulk.out"; then
    echo "error: bulk POST $path failed:" >&2
    paste - - <"$WORK/bulk.out" | awk '$NF < 200 || $NF > 299' | head -3 >&2
    exit 1
  fi
  awk 'NR % 2 == 1' "$WORK/bulk.out"
}

CHANNELS='{ "name": "email", "status": "active", "couplingMode": "partial" }
{ "name": "in_app", "status": "active", "couplingMode": "partial" }
{ "name": "branch", "status": "active", "couplingMode": "partial" }'

# ---- tutorial (default tenant; bodies as in tests/tutorial.sh) ---------------------------
setup_tutorial() {
  local key=$ARBITER_ADMIN_KEY schema offers ids flow
  schema=$(api "$key" POST /api/v1/schemas '{
    "name": "customer", "displayName": "Customer",
    "fields": [
      { "name": "customer_id",       "dataType": "varchar", "isUnique": true },
      { "name": "tenureMonths",      "dataType": "integer" },
      { "name": "tier",              "dataType": "varchar" },
      { "name": "hasChecking",       "dataType": "boolean" },
      { "name": "hasSavings",        "dataType": "boolean" },
      { "name": "hasCreditCard",     "dataType": "boolean" },
      { "name": "hasMortgage",       "dataType": "boolean" },
      { "name": "hasBrokerage",      "dataType": "boolean" },
      { "name": "avgMonthlyBalance", "dataType": "decimal" }
    ] }' | jq -r .id)
  cat >"$WORK/tut-offers" <<'EOF'
{ "name": "High-yield savings", "status": "active", "category": "cross-sell", "priority": 70, "businessValue": 40, "revenueValue": 40 }
{ "name": "Rewards credit card", "status": "active", "category": "cross-sell", "priority": 80, "businessValue": 80, "revenueValue": 90 }
{ "name": "Wealth-management account", "status": "active", "category": "cross-sell", "priority": 95, "businessValue": 95, "revenueValue": 250 }
{ "name": "Mortgage pre-approval", "status": "active", "category": "cross-sell", "priority": 90, "businessValue": 90, "revenueValue": 500 }
EOF
  mapfile -t ids < <(bulk "$key" /api/v1/offers "$WORK/tut-offers" | jq -r .id)
  rule() { # offer-index name attribute operator value
    printf '{ "name": "%s", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "%s", "stage": "eligibility", "config": { "attribute": "%s", "operator": "%s", "value": %s } }\n' \
      "$2" "${ids[$1]}" "$3" "$4" "$5"
  }
  {
    rule 0 "Savings — has checking" customer.hasChecking eq true
    rule 0 "Savings — no savings yet" customer.hasSavings eq false
    rule 1 "Card — no card yet" customer.hasCreditCard eq false
    rule 1 "Card — tenure >= 6mo" customer.tenureMonths gte 6
    rule 2 "Wealth — no brokerage yet" customer.hasBrokerage eq false
    rule 2 "Wealth — premium tier" customer.tier in '["premium", "private"]'
    rule 2 "Wealth — balance >= 50k" customer.avgMonthlyBalance gte 50000
    rule 3 "Mortgage — none yet" customer.hasMortgage eq false
    rule 3 "Mortgage — tenure >= 24mo" customer.tenureMonths gte 24
  } >"$WORK/tut-rules"
  bulk "$key" /api/v1/qualification-rules "$WORK/tut-rules" >/dev/null
  echo "$CHANNELS" >"$WORK/channels"
  bulk "$key" /api/v1/channels "$WORK/channels" >/dev/null
  flow=$(api "$key" POST /api/v1/decision-flows "{
    \"key\": \"cross-sell\", \"name\": \"Cross-Sell\",
    \"draftConfig\": { \"version\": 2,
      \"flowConfig\": { \"experiment\": { \"enabled\": true, \"holdoutPercent\": 10, \"controlGroupAction\": \"no_offers\" } },
      \"nodes\": [
        { \"id\": \"inv\", \"type\": \"inventory\", \"phase\": 1, \"position\": 0, \"config\": { \"scope\": \"all\", \"includeStatuses\": [\"active\"] } },
        { \"id\": \"enr\", \"type\": \"enrich\", \"phase\": 1, \"position\": 1,
          \"config\": { \"sources\": [ { \"schemaId\": \"$schema\", \"lookupKey\": \"customer_id\",
            \"fields\": [\"tier\", \"tenureMonths\", \"hasChecking\", \"hasSavings\", \"hasCreditCard\", \"hasMortgage\", \"hasBrokerage\", \"avgMonthlyBalance\"] } ] } },
        { \"id\": \"qual\", \"type\": \"qualify\", \"phase\": 1, \"position\": 2, \"config\": { \"mode\": \"all\" } },
        { \"id\": \"cp\", \"type\": \"contact_policy\", \"phase\": 1, \"position\": 3, \"config\": { \"mode\": \"all\" } },
        { \"id\": \"score\", \"type\": \"score\", \"phase\": 2, \"position\": 4, \"config\": { \"method\": \"formula\", \"formula\": {
            \"propensityWeight\": 0.4, \"relevanceWeight\": 0.15, \"impactWeight\": 0.35, \"emphasisWeight\": 0.1, \"upliftWeight\": 0.5 } } },
        { \"id\": \"rank\", \"type\": \"rank\", \"phase\": 2, \"position\": 5, \"config\": { \"method\": \"topN\", \"maxCandidates\": 5 } },
        { \"id\": \"out\", \"type\": \"response\", \"phase\": 3, \"position\": 6, \"config\": { \"responseFormat\": \"standard\" } }
      ] } }" | jq -r .id)
  api "$key" POST /api/v1/decision-flows/publish "{ \"id\": \"$flow\" }" >/dev/null
  api "$key" POST "/api/v1/schemas/$schema/data" '{"rows": [
    {"customer_id": "cust_42", "tenureMonths": 36, "tier": "premium", "hasChecking": true, "hasSavings": false,
     "hasCreditCard": false, "hasMortgage": true, "hasBrokerage": false, "avgMonthlyBalance": 32000}]}' >/dev/null
}

