//! Plain-text tables for `warren ctl list`: one row per object, the columns chosen per
//! resource, widths fitted to the content.

use serde_json::Value;

/// A column: its heading and where in the object its value is (a `/`-separated path).
pub type Column = (&'static str, &'static str);

/// The columns shown for each resource.
pub fn columns(resource: &str) -> &'static [Column] {
    match resource {
        "queues" => &[
            ("vhost", "vhost"),
            ("name", "name"),
            ("type", "type"),
            ("messages", "messages"),
            ("ready", "messages_ready"),
            ("unacked", "messages_unacknowledged"),
            ("consumers", "consumers"),
            ("publish/s", "message_stats/publish_details/rate"),
            ("deliver/s", "message_stats/deliver_get_details/rate"),
        ],
        "exchanges" => &[
            ("vhost", "vhost"),
            ("name", "name"),
            ("type", "type"),
            ("durable", "durable"),
            ("in/s", "message_stats/publish_in_details/rate"),
        ],
        "connections" => &[
            ("name", "name"),
            ("user", "user"),
            ("vhost", "vhost"),
            ("state", "state"),
            ("channels", "channels"),
            ("recv_oct", "recv_oct"),
            ("send_oct", "send_oct"),
        ],
        "channels" => &[
            ("name", "name"),
            ("user", "user"),
            ("prefetch", "prefetch_count"),
            ("unacked", "messages_unacknowledged"),
            ("consumers", "consumer_count"),
        ],
        "consumers" => &[
            ("vhost", "queue/vhost"),
            ("queue", "queue/name"),
            ("tag", "consumer_tag"),
            ("ack", "ack_required"),
            ("prefetch", "prefetch_count"),
            ("channel", "channel_details/name"),
        ],
        "bindings" => &[
            ("vhost", "vhost"),
            ("source", "source"),
            ("destination", "destination"),
            ("type", "destination_type"),
            ("routing_key", "routing_key"),
        ],
        "users" => &[("name", "name"), ("tags", "tags")],
        "vhosts" => &[
            ("name", "name"),
            ("messages", "messages"),
            ("description", "description"),
        ],
        "permissions" => &[
            ("user", "user"),
            ("vhost", "vhost"),
            ("configure", "configure"),
            ("write", "write"),
            ("read", "read"),
        ],
        "topic_permissions" => &[
            ("user", "user"),
            ("vhost", "vhost"),
            ("exchange", "exchange"),
            ("write", "write"),
            ("read", "read"),
        ],
        "limits" => &[
            ("scope", "scope"),
            ("name", "name"),
            ("limit", "limit"),
            ("value", "value"),
        ],
        _ => &[("name", "name")],
    }
}

/// One row per limit from `GET /api/vhost-limits` and `GET /api/user-limits`.
pub fn limit_rows(vhosts: &Value, users: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for (scope, key, list) in [("vhost", "vhost", vhosts), ("user", "user", users)] {
        for entry in list.as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let name = entry[key].clone();
            if let Some(limits) = entry["value"].as_object() {
                for (limit, value) in limits {
                    rows.push(serde_json::json!({
                        "scope": scope, "name": name, "limit": limit, "value": value,
                    }));
                }
            }
        }
    }
    rows
}

fn cell(v: &Value, path: &str) -> String {
    let mut cur = v;
    for k in path.split('/') {
        match cur.get(k) {
            Some(x) => cur = x,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// The rows of `list` under `cols`, aligned.
pub fn render(list: &[Value], cols: &[Column]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|o| cols.iter().map(|(_, p)| cell(o, p)).collect())
        .collect();
    let mut width: Vec<usize> = cols.iter().map(|(h, _)| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(cols.iter().map(|(h, _)| *h).collect(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_aligned_columns_and_nested_paths() {
        let list = vec![
            json!({"vhost": "/", "name": "jobs", "type": "classic", "messages": 12,
                   "message_stats": {"publish_details": {"rate": 1.5}}}),
            json!({"vhost": "/", "name": "a-much-longer-name", "type": "stream", "messages": 0}),
        ];
        let t = render(&list, &columns("queues")[..4]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "vhost  name                type     messages");
        assert_eq!(lines[1], "/      jobs                classic  12");
        assert_eq!(cell(&list[0], "message_stats/publish_details/rate"), "1.5");
        assert_eq!(cell(&list[1], "message_stats/publish_details/rate"), "");
    }
}
