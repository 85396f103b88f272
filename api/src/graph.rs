//! A state machine's graph, laid out on the server for the console's SVG: each state of
//! an Amazon States Language definition is a box, each transition (`Next`, `Default`,
//! a `Choices` rule's `Next`, a `Catch`'s `Next`) an arrow.
//!
//! Layers by the longest path from `StartAt` over the forward transitions (a transition
//! back to an earlier state is drawn as a curve on the side), states in a layer in the
//! order they were reached. Parallel and Map states are one box naming their branches.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

const NODE_W: i64 = 200;
const NODE_H: i64 = 44;
const GAP_X: i64 = 36;
const GAP_Y: i64 = 56;
const MARGIN: i64 = 24;

/// The laid-out graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// The SVG's width.
    pub width: i64,
    /// The SVG's height.
    pub height: i64,
    /// The states.
    pub nodes: Vec<Node>,
    /// The transitions.
    pub edges: Vec<Edge>,
}

/// One state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The state's name.
    pub name: String,
    /// Its `Type`, with the branch count of a Parallel or Map state.
    pub label: String,
    /// Its `Type` (the CSS class).
    pub kind: String,
    /// `succeeded`, `failed`, `running`, or `none` (not reached / no execution).
    pub outcome: String,
    /// Whether it is `StartAt`.
    pub start: bool,
    /// Top left corner.
    pub x: i64,
    /// Top left corner.
    pub y: i64,
    /// Size.
    pub w: i64,
    /// Size.
    pub h: i64,
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// From this state.
    pub from: String,
    /// To this state.
    pub to: String,
    /// `next`, `choice`, `default` or `catch`.
    pub kind: &'static str,
    /// The SVG path.
    pub d: String,
}

/// The transitions out of `state`.
fn transitions(state: &Value) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if let Some(next) = state["Next"].as_str() {
        out.push((next.to_owned(), "next"));
    }
    for rule in state["Choices"].as_array().into_iter().flatten() {
        if let Some(next) = rule["Next"].as_str() {
            out.push((next.to_owned(), "choice"));
        }
    }
    if let Some(next) = state["Default"].as_str() {
        out.push((next.to_owned(), "default"));
    }
    for catcher in state["Catch"].as_array().into_iter().flatten() {
        if let Some(next) = catcher["Next"].as_str() {
            out.push((next.to_owned(), "catch"));
        }
    }
    out
}

/// Lay out `definition` (its top-level `States`), each state coloured by `outcomes`.
pub fn layout(definition: &Value, outcomes: &BTreeMap<String, &'static str>) -> Graph {
    let empty = serde_json::Map::new();
    let states = definition["States"].as_object().unwrap_or(&empty);
    let start = definition["StartAt"].as_str().unwrap_or_default();

    // Depth-first from StartAt: discovery order, and which transitions go back.
    let mut order: Vec<String> = Vec::new();
    let mut on_stack: HashMap<String, bool> = HashMap::new();
    let mut back: Vec<(String, String)> = Vec::new();
    fn visit(
        name: &str,
        states: &serde_json::Map<String, Value>,
        order: &mut Vec<String>,
        on_stack: &mut HashMap<String, bool>,
        back: &mut Vec<(String, String)>,
    ) {
        on_stack.insert(name.to_owned(), true);
        order.push(name.to_owned());
        if let Some(state) = states.get(name) {
            for (next, _) in transitions(state) {
                match on_stack.get(&next) {
                    Some(true) => back.push((name.to_owned(), next)),
                    Some(false) => {}
                    None if states.contains_key(&next) => {
                        visit(&next, states, order, on_stack, back)
                    }
                    None => {}
                }
            }
        }
        on_stack.insert(name.to_owned(), false);
    }
    if states.contains_key(start) {
        visit(start, states, &mut order, &mut on_stack, &mut back);
    }
    // States nothing reaches, at the end, in their own order.
    for name in states.keys() {
        if !on_stack.contains_key(name) {
            visit(name, states, &mut order, &mut on_stack, &mut back);
        }
    }

    // Longest path over forward transitions: relax in discovery order until stable
    // (bounded: a DAG settles in as many rounds as it has states).
    let mut layer: HashMap<&str, i64> = order.iter().map(|n| (n.as_str(), 0)).collect();
    for _ in 0..order.len() {
        let mut changed = false;
        for name in &order {
            let Some(state) = states.get(name) else {
                continue;
            };
            let here = layer.get(name.as_str()).copied().unwrap_or(0);
            for (next, _) in transitions(state) {
                if back.iter().any(|(f, t)| f == name && *t == next) {
                    continue;
                }
                if let Some(l) = layer.get_mut(next.as_str())
                    && *l < here + 1
                {
                    *l = here + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }

    let mut rows: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for name in &order {
        rows.entry(layer.get(name.as_str()).copied().unwrap_or(0))
            .or_default()
            .push(name.as_str());
    }
    let widest = rows.values().map(Vec::len).max().unwrap_or(1).max(1) as i64;
    let width = MARGIN * 2 + widest * NODE_W + (widest - 1) * GAP_X + 120;
    let mut nodes = Vec::new();
    let mut position: HashMap<&str, (i64, i64)> = HashMap::new();
    for (row, names) in &rows {
        let count = names.len() as i64;
        let row_width = count * NODE_W + (count - 1) * GAP_X;
        let left = (width - 120 - row_width) / 2;
        for (i, name) in names.iter().enumerate() {
            let x = left + i as i64 * (NODE_W + GAP_X);
            let y = MARGIN + row * (NODE_H + GAP_Y);
            position.insert(name, (x, y));
            let state = states.get(*name).unwrap_or(&Value::Null);
            let kind = state["Type"].as_str().unwrap_or("?").to_owned();
            let branches = state["Branches"].as_array().map(Vec::len);
            let label = match (kind.as_str(), branches) {
                ("Parallel", Some(n)) => format!("Parallel · {n} branches"),
                ("Map", _) => "Map · per item".to_owned(),
                _ => kind.clone(),
            };
            nodes.push(Node {
                name: (*name).to_owned(),
                label,
                kind,
                outcome: outcomes.get(*name).copied().unwrap_or("none").to_owned(),
                start: *name == start,
                x,
                y,
                w: NODE_W,
                h: NODE_H,
            });
        }
    }
    let rows_count = rows.keys().max().map_or(1, |m| m + 1);
    let height = MARGIN * 2 + rows_count * NODE_H + (rows_count - 1) * GAP_Y;

    let mut edges = Vec::new();
    for name in &order {
        let Some(state) = states.get(name) else {
            continue;
        };
        let Some(&(x1, y1)) = position.get(name.as_str()) else {
            continue;
        };
        for (next, kind) in transitions(state) {
            let Some(&(x2, y2)) = position.get(next.as_str()) else {
                continue;
            };
            let d = if y2 > y1 {
                let (sx, sy) = (x1 + NODE_W / 2, y1 + NODE_H);
                let (tx, ty) = (x2 + NODE_W / 2, y2);
                let bend = (ty - sy) / 2;
                format!(
                    "M{sx},{sy} C{sx},{} {tx},{} {tx},{ty}",
                    sy + bend,
                    ty - bend
                )
            } else {
                // Back (or sideways): out of the right side, around, into the right side.
                let (sx, sy) = (x1 + NODE_W, y1 + NODE_H / 2);
                let (tx, ty) = (x2 + NODE_W, y2 + NODE_H / 2);
                let out = sx.max(tx) + 60;
                format!("M{sx},{sy} C{out},{sy} {out},{ty} {tx},{ty}")
            };
            edges.push(Edge {
                from: name.clone(),
                to: next,
                kind,
                d,
            });
        }
    }
    Graph {
        width,
        height,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_are_layered_by_their_longest_path() {
        let definition = json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Next": "B", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}]},
                "B": {"Type": "Choice", "Choices": [{"Variable": "$.x", "BooleanEquals": true, "Next": "C"}], "Default": "A"},
                "C": {"Type": "Succeed"},
                "F": {"Type": "Fail"},
                "Lonely": {"Type": "Pass", "End": true},
            }
        });
        let outcomes = BTreeMap::from([("A".to_owned(), "succeeded"), ("B".to_owned(), "failed")]);
        let graph = layout(&definition, &outcomes);
        let node = |n: &str| graph.nodes.iter().find(|x| x.name == n).expect(n);
        assert!(node("A").start);
        assert!(node("A").y < node("B").y);
        assert!(node("B").y < node("C").y);
        // F is reached from A only, one layer down.
        assert_eq!(node("F").y, node("B").y);
        assert_eq!(node("A").outcome, "succeeded");
        assert_eq!(node("B").outcome, "failed");
        assert_eq!(node("C").outcome, "none");
        assert_eq!(graph.nodes.len(), 5);
        let kinds: Vec<(&str, &str, &str)> = graph
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.kind))
            .collect();
        assert!(kinds.contains(&("A", "B", "next")));
        assert!(kinds.contains(&("A", "F", "catch")));
        assert!(kinds.contains(&("B", "C", "choice")));
        assert!(kinds.contains(&("B", "A", "default")));
        // Every box inside the drawing.
        for n in &graph.nodes {
            assert!(n.x >= 0 && n.x + n.w <= graph.width, "{n:?}");
            assert!(n.y >= 0 && n.y + n.h <= graph.height, "{n:?}");
        }
    }

    #[test]
    fn nonsense_draws_nothing_and_does_not_panic() {
        for definition in [
            json!(null),
            json!({"States": 3}),
            json!({"StartAt": "X", "States": {"A": {"Next": "Z"}}}),
        ] {
            let graph = layout(&definition, &BTreeMap::new());
            assert!(graph.edges.is_empty(), "{definition}");
        }
    }
}
