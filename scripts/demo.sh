#!/usr/bin/env bash
# The main job: the sync server on its embedded SQLite with the demo banner, and a
# walk-through with two phones (the field CLI) that record offline and merge, and a review
# decision made at the desk console and seen on a phone.
#   scripts/demo.sh            run the walk-through, then keep serving until Ctrl-C
#   scripts/demo.sh --exit     run the walk-through and stop (used by the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
keep_serving=1
[ "${1:-}" = "--exit" ] && keep_serving=0
port="${GRIDSYNC_DEMO_PORT:-8080}"
work="${GRIDSYNC_DEMO_DIR:-$PWD/target/demo}"

cargo build -q -p gridsync-server -p gridsync-examples --bin gridsync-server --bin gridsync-field
bin="${CARGO_TARGET_DIR:-target}/debug"
server="$bin/gridsync-server"
field="$bin/gridsync-field"

rm -rf "$work" && mkdir -p "$work"
"$server" serve --data "$work/server" --listen "127.0.0.1:$port" --demo >"$work/server.out" 2>"$work/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q '^listening on' "$work/server.out" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
cat "$work/server.out"
url=$(sed -n 's/^listening on //p' "$work/server.out")
liaison=$(sed -n 's/^enrolment code for liaison \([^ ]*\) .*/\1/p' "$work/server.out")
code1=$(sed -n 's/^enrolment code for liaison .*: //p' "$work/server.out")
code2=$("$server" admin --data "$work/server" issue-code --person "$liaison" --json | sed 's/.*"code":"\([^"]*\)".*/\1/')
sup_code=$(sed -n 's/^enrolment code for supervisor .*: //p' "$work/server.out")

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
a=("$field" --db "$work/phone-a.db")
b=("$field" --db "$work/phone-b.db")
s=("$field" --db "$work/phone-supervisor.db")

say "Two phones of the liaison and the supervisor's phone enrol and sync"
"${a[@]}" enroll --server "$url" --code "$code1" --device-name "phone A"
"${b[@]}" enroll --server "$url" --code "$code2" --device-name "phone B"
"${s[@]}" enroll --server "$url" --code "$sup_code" --device-name "supervisor"
"${a[@]}" sync && "${b[@]}" sync && "${s[@]}" sync

say "Producers of the liaison's village"
"${a[@]}" producer list --limit 5
pid_json=$("${a[@]}" --json producer list --limit 1)
producer=$(printf '%s' "$pid_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

say "Offline on the pasture: phone A changes the phone number and registers a new producer"
"${a[@]}" producer edit "$producer" --phone 13900001111
"${a[@]}" producer add --name "演示新登记家庭牧场" --type family_ranch --owner "演示户主" --phone 13800002222 --id-number 11010519491231002X --address "演示地址" --product 羊肉

say "Offline too: phone B changes the same phone number and the address, and records a patrol"
"${b[@]}" producer edit "$producer" --phone 13700003333 --address "演示：搬到夏季牧场"
"${b[@]}" visit record --producer "$producer" --answer production_records=yes --answer input_purchase=yes \
  --answer drug_use=no --answer additives=yes --answer input_waste=yes --answer compliance_certificate=yes \
  --answer other=无 --finding "兽药与饲料混放" --rectify 2027-01-15 "演示整〔2026〕001号" --complete

say "Both find a signal and sync"
"${a[@]}" sync
"${b[@]}" sync
"${a[@]}" sync

say "Merged on phone A: B's address, A's new producer, B's visit; the phone number shows as a conflict"
"${a[@]}" producer show "$producer"
"${a[@]}" rectifications

say "The supervisor's phone sees it all after its sync"
"${s[@]}" sync
"${s[@]}" producer search "演示新登记"
"${s[@]}" status

say "Phone A submits its new producer for review"
new_json=$("${a[@]}" --json producer search "演示新登记")
new_producer=$(printf '%s' "$new_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
"${a[@]}" producer review "$new_producer" submit
"${a[@]}" sync

desk_user=$(sed -n 's/^desk sign-in for county_reviewer .* username \([^ ]*\) password .*/\1/p' "$work/server.out")
desk_pass=$(sed -n 's/^desk sign-in for county_reviewer .* password \(.*\)$/\1/p' "$work/server.out")
say "At the desk ($url/desk/), the county reviewer $desk_user signs in and returns it with a reason"
jar="$work/desk.cookies"
field_of() { sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" | head -1; }
login_csrf=$(curl -sf -c "$jar" "$url/desk/login" | field_of csrf)
status=$(curl -s -b "$jar" -c "$jar" -o /dev/null -w '%{http_code}' --data-urlencode "username=$desk_user" \
  --data-urlencode "password=$desk_pass" --data-urlencode "csrf=$login_csrf" "$url/desk/login")
[ "$status" = 303 ] || { echo "desk sign-in answered $status"; exit 1; }
queue=$(curl -sf -b "$jar" "$url/desk/reviews")
printf '%s' "$queue" | grep -q "data-id=\"$new_producer\"" || { echo "the entry is not in the county's queue"; exit 1; }
echo "待审核列表中有：演示新登记家庭牧场（待乡镇审核）"
csrf=$(printf '%s' "$queue" | field_of csrf)
status=$(curl -s -b "$jar" -o /dev/null -w '%{http_code}' --data-urlencode "csrf=$csrf" --data-urlencode state=submitted \
  --data-urlencode "reason=演示：请补充统一社会信用代码" "$url/desk/reviews/$new_producer/return")
[ "$status" = 303 ] || { echo "the desk decision answered $status"; exit 1; }
echo "已退回，原因：演示：请补充统一社会信用代码"

say "Phone A syncs and shows the entry returned, with the desk's reason"
"${a[@]}" sync
"${a[@]}" producer show "$new_producer"

if [ $keep_serving = 1 ]; then
  say "The server keeps running at $url (data in $work/server). Ctrl-C to stop."
  echo "Desk console: $url/desk/"
  sed -n 's/^desk sign-in for /  sign in as /p' "$work/server.out"
  wait $pid
fi
