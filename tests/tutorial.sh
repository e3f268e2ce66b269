#!/usr/bin/env bash
# The platform's cross-sell tutorial, its commands run verbatim
# with curl and jq against `arbiter serve` on a free loopback port, then checked:
# credit card rank 1, savings rank 2, totalCandidates 4, afterQualification 2.
set -euo pipefail
cd "$(dirname "$0")/.."

# `cargo test` runs this script through tests/tutorial.rs with ARBITER_BIN set;
# run by hand, it builds the binary itself.
if [ -z "${ARBITER_BIN:-}" ]; then
  cargo build --quiet
  ARBITER_BIN="$PWD/target/debug/arbiter"
fi
BIN="$ARBITER_BIN"
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

export ARBITER_ADMIN_KEY="tutorial-admin-key"
"$BIN" serve --listen 127.0.0.1:0 --data "$WORK/data" --plugins "$PWD/plugins" >"$WORK/out" 2>"$WORK/log" &
SERVER=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/out")
[ -n "$ADDR" ] || { echo "server did not start"; cat "$WORK/log"; exit 1; }

# 0. Set up your shell (BASE points at this server).
export BASE="$ADDR"
export API_KEY="$ARBITER_ADMIN_KEY"
export TENANT_ID="default"
AUTH=(-H "X-API-Key: $API_KEY" -H "X-Tenant-Id: $TENANT_ID" -H "Content-Type: application/json")

# ---- verbatim from the tutorial: steps 1 to 5 ----
SCHEMA_ID=$(curl -s -X POST "$BASE/api/v1/schemas" "${AUTH[@]}" \
  -d '{
    "name": "customer",
    "displayName": "Customer",
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
    ]
  }' | jq -r '.id')
echo "Schema id: $SCHEMA_ID"

OFFER_SAVINGS=$(curl -s -X POST "$BASE/api/v1/offers" "${AUTH[@]}" -d '{
  "name": "High-yield savings", "status": "active", "category": "cross-sell",
  "priority": 70, "businessValue": 40, "revenueValue": 40
}' | jq -r '.id')

OFFER_CARD=$(curl -s -X POST "$BASE/api/v1/offers" "${AUTH[@]}" -d '{
  "name": "Rewards credit card", "status": "active", "category": "cross-sell",
  "priority": 80, "businessValue": 80, "revenueValue": 90
}' | jq -r '.id')

OFFER_WEALTH=$(curl -s -X POST "$BASE/api/v1/offers" "${AUTH[@]}" -d '{
  "name": "Wealth-management account", "status": "active", "category": "cross-sell",
  "priority": 95, "businessValue": 95, "revenueValue": 250
}' | jq -r '.id')

OFFER_MORTGAGE=$(curl -s -X POST "$BASE/api/v1/offers" "${AUTH[@]}" -d '{
  "name": "Mortgage pre-approval", "status": "active", "category": "cross-sell",
  "priority": 90, "businessValue": 90, "revenueValue": 500
}' | jq -r '.id')

# Savings: only for checking-only customers
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Savings — has checking\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_SAVINGS\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.hasChecking\", \"operator\": \"eq\", \"value\": true } }"
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Savings — no savings yet\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_SAVINGS\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.hasSavings\", \"operator\": \"eq\", \"value\": false } }"

# Credit card: not for customers who already have one, and needs 6mo tenure
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Card — no card yet\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_CARD\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.hasCreditCard\", \"operator\": \"eq\", \"value\": false } }"
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Card — tenure >= 6mo\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_CARD\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.tenureMonths\", \"operator\": \"gte\", \"value\": 6 } }"

# Wealth: premium/private tier, significant balance, no brokerage yet
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Wealth — no brokerage yet\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_WEALTH\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.hasBrokerage\", \"operator\": \"eq\", \"value\": false } }"
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Wealth — premium tier\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_WEALTH\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.tier\", \"operator\": \"in\", \"value\": [\"premium\", \"private\"] } }"
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Wealth — balance >= 50k\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_WEALTH\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.avgMonthlyBalance\", \"operator\": \"gte\", \"value\": 50000 } }"

# Mortgage: no mortgage yet, strong tenure
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Mortgage — none yet\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_MORTGAGE\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.hasMortgage\", \"operator\": \"eq\", \"value\": false } }"
curl -s -X POST "$BASE/api/v1/qualification-rules" "${AUTH[@]}" -d "{
  \"name\": \"Mortgage — tenure >= 24mo\", \"ruleType\": \"attribute_condition\",
  \"scope\": \"offer\", \"scopeId\": \"$OFFER_MORTGAGE\", \"stage\": \"eligibility\",
  \"config\": { \"attribute\": \"customer.tenureMonths\", \"operator\": \"gte\", \"value\": 24 } }"

for ch in email in_app branch; do
  curl -s -X POST "$BASE/api/v1/channels" "${AUTH[@]}" \
    -d "{ \"name\": \"$ch\", \"status\": \"active\", \"couplingMode\": \"partial\" }"
done

FLOW_ID=$(curl -s -X POST "$BASE/api/v1/decision-flows" "${AUTH[@]}" \
  -d "{
    \"key\": \"cross-sell\",
    \"name\": \"Cross-Sell\",
    \"draftConfig\": {
      \"version\": 2,
      \"flowConfig\": { \"experiment\": { \"enabled\": true, \"holdoutPercent\": 10, \"controlGroupAction\": \"no_offers\" } },
      \"nodes\": [
        { \"id\": \"inv\",   \"type\": \"inventory\",      \"phase\": 1, \"position\": 0,
          \"config\": { \"scope\": \"all\", \"includeStatuses\": [\"active\"] } },
        { \"id\": \"enr\",   \"type\": \"enrich\",         \"phase\": 1, \"position\": 1,
          \"config\": { \"sources\": [ { \"schemaId\": \"$SCHEMA_ID\", \"lookupKey\": \"customer_id\",
            \"fields\": [\"tier\", \"tenureMonths\", \"hasChecking\", \"hasSavings\", \"hasCreditCard\",
              \"hasMortgage\", \"hasBrokerage\", \"avgMonthlyBalance\"] } ] } },
        { \"id\": \"qual\",  \"type\": \"qualify\",        \"phase\": 1, \"position\": 2,
          \"config\": { \"mode\": \"all\" } },
        { \"id\": \"cp\",    \"type\": \"contact_policy\", \"phase\": 1, \"position\": 3,
          \"config\": { \"mode\": \"all\" } },
        { \"id\": \"score\", \"type\": \"score\",          \"phase\": 2, \"position\": 4,
          \"config\": { \"method\": \"formula\", \"formula\": {
            \"propensityWeight\": 0.4, \"relevanceWeight\": 0.15,
            \"impactWeight\": 0.35, \"emphasisWeight\": 0.1, \"upliftWeight\": 0.5 } } },
        { \"id\": \"rank\",  \"type\": \"rank\",           \"phase\": 2, \"position\": 5,
          \"config\": { \"method\": \"topN\", \"maxCandidates\": 5 } },
        { \"id\": \"out\",   \"type\": \"response\",       \"phase\": 3, \"position\": 6,
          \"config\": { \"responseFormat\": \"standard\" } }
      ]
    }
  }" | jq -r '.id')

curl -s -X POST "$BASE/api/v1/decision-flows/publish" "${AUTH[@]}" -d "{ \"id\": \"$FLOW_ID\" }"
# ---- end of verbatim steps 1-5 ----
echo

# The tutorial's customer: 36 months, premium, checking, no savings, no card, a
# mortgage, balance under 50k — loaded through the schema data endpoint.
curl -s -X POST "$BASE/api/v1/schemas/$SCHEMA_ID/data" "${AUTH[@]}" -d '{"rows": [
  {"customer_id": "cust_42", "tenureMonths": 36, "tier": "premium", "hasChecking": true, "hasSavings": false,
   "hasCreditCard": false, "hasMortgage": true, "hasBrokerage": false, "avgMonthlyBalance": 32000}]}'
echo

# ---- verbatim from the tutorial: step 7 ----
RESPONSE=$(curl -s -X POST "$BASE/api/v1/recommend" "${AUTH[@]}" \
  -d '{ "customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell" }')
echo "$RESPONSE" | jq .

check() {
  local what=$1 got=$2 want=$3
  if [ "$got" != "$want" ]; then echo "FAIL: $what: expected $want, got $got"; exit 1; fi
  echo "ok: $what = $got"
}
check "schema id"                "$( [ -n "$SCHEMA_ID" ] && [ "$SCHEMA_ID" != null ] && echo set)" set
check "flow id"                  "$( [ -n "$FLOW_ID" ] && [ "$FLOW_ID" != null ] && echo set)" set
check "rank 1"                   "$(echo "$RESPONSE" | jq -r '.decisions[0].offerName')" "Rewards credit card"
check "rank 2"                   "$(echo "$RESPONSE" | jq -r '.decisions[1].offerName')" "High-yield savings"
check "count"                    "$(echo "$RESPONSE" | jq -r '.count')" 2
check "meta.totalCandidates"     "$(echo "$RESPONSE" | jq -r '.meta.totalCandidates')" 4
check "meta.afterQualification"  "$(echo "$RESPONSE" | jq -r '.meta.afterQualification')" 2
check "decisionFlowKey"          "$(echo "$RESPONSE" | jq -r '.decisionFlowKey')" cross-sell

# Explain: the score breakdown per decision.
EXPLAIN=$(curl -s -X POST "$BASE/api/v1/recommend?explain=true" "${AUTH[@]}" \
  -d '{ "customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell" }')
check "explain upliftWeight" "$(echo "$EXPLAIN" | jq -r '.decisions[0].explanation.rankingScores.weights.upliftWeight')" 0.5

# Respond to rank 1 and replay it: the replay is recognised and counts nothing twice.
REC_ID=$(echo "$RESPONSE" | jq -r '.recommendationId')
R1=$(curl -s -X POST "$BASE/api/v1/respond" "${AUTH[@]}" \
  -d "{ \"customerId\": \"cust_42\", \"recommendationId\": \"$REC_ID\", \"rank\": 1, \"outcome\": \"click\", \"idempotencyKey\": \"k1\" }")
R2=$(curl -s -X POST "$BASE/api/v1/respond" "${AUTH[@]}" \
  -d "{ \"customerId\": \"cust_42\", \"recommendationId\": \"$REC_ID\", \"rank\": 1, \"outcome\": \"click\", \"idempotencyKey\": \"k1\" }")
check "respond recorded" "$(echo "$R1" | jq -r '.recorded')" true
check "replay duplicate" "$(echo "$R2" | jq -r '.duplicate')" true
check "same response id" "$(echo "$R2" | jq -r '.responseId')" "$(echo "$R1" | jq -r '.responseId')"

# What's next: a customer_total_cap of 4 contacts a month. cust_42 has been shown 4 offers
# (two decisions of two), so a fifth contact is blocked.
curl -s -X POST "$BASE/api/v1/contact-policies" "${AUTH[@]}" \
  -d '{ "name": "Cross-sell budget", "ruleType": "customer_total_cap", "config": { "maxTotal": 4, "periodType": "monthly" } }' >/dev/null
CAPPED=$(curl -s -X POST "$BASE/api/v1/recommend" "${AUTH[@]}" \
  -d '{ "customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell" }')
check "capped count"                "$(echo "$CAPPED" | jq -r '.count')" 0
check "capped afterContactPolicy"   "$(echo "$CAPPED" | jq -r '.meta.afterContactPolicy')" 0

# Measure incrementality and inspect uplift (too little data yet: flagged, not invented).
RESULTS=$(curl -s "$BASE/api/v1/experiments/cross-sell/results" "${AUTH[@]}")
check "experiment insufficientData" "$(echo "$RESULTS" | jq -r '.insufficientData')" true
UPLIFT=$(curl -s "$BASE/api/v1/algorithm-models/$FLOW_ID/uplift?customerId=cust_42" "${AUTH[@]}")
check "uplift offers"               "$(echo "$UPLIFT" | jq -r '.offers | length')" 4
echo "1 passed, 0 failed"
