//! `FROM` items and the scopes names are resolved in (PostgreSQL docs §7.2): stored relations,
//! derived tables (sub-selects, CTEs, functions, VALUES) and aliased joins.

use std::collections::BTreeSet;

use super::*;
/// Named (or unnamed) columns of a derived table, with their origins.
pub(super) type Columns = Vec<(Option<String>, Origin)>;

/// A relation or derived table visible in a `FROM` list.
#[derive(Debug, Clone)]
pub(super) enum Item {
    /// A stored relation (table, view, foreign table…). `renamed` when its alias lists column
    /// names, so a column name no longer tells which stored column it is.
    Base {
        name: QualifiedName,
        alias: String,
        renamed: bool,
    },
    /// A sub-select, CTE, function or VALUES list: named columns with known origins, or, when
    /// `any` is set, columns whose names are unknown and which may all carry `any`.
    Derived {
        alias: Option<String>,
        columns: Vec<(Option<String>, Origin)>,
        any: Option<Origin>,
    },
    /// A join with an alias (`(a JOIN b) AS j`): `j.x` is column `x` of either side.
    Join { alias: String, items: Vec<Item> },
}

impl Item {
    pub(super) fn alias(&self) -> Option<&str> {
        match self {
            Item::Base { alias, .. } => Some(alias),
            Item::Derived { alias, .. } => alias.as_deref(),
            Item::Join { alias, .. } => Some(alias),
        }
    }

    /// The value of the whole row.
    pub(super) fn whole_row(&self) -> Origin {
        match self {
            Item::Base { name, .. } => Origin::derived(
                [Source {
                    relation: name.clone(),
                    part: Part::WholeRow,
                }]
                .into(),
            ),
            Item::Derived { columns, any, .. } => {
                let mut sources: BTreeSet<Source> = columns
                    .iter()
                    .flat_map(|(_, o)| o.sources.iter().cloned())
                    .collect();
                if let Some(any) = any {
                    sources.extend(any.sources.iter().cloned());
                }
                Origin::derived(sources)
            }
            Item::Join { items, .. } => {
                Origin::derived(items.iter().flat_map(|i| i.whole_row().sources).collect())
            }
        }
    }

    /// Its columns as `*` expands them.
    pub(super) fn star(&self) -> Vec<Output> {
        match self {
            Item::Base { name, renamed, .. } => {
                if *renamed {
                    vec![Output::Column(Origin {
                        sources: [Source {
                            relation: name.clone(),
                            part: Part::AnyColumn,
                        }]
                        .into(),
                        direct: true,
                    })]
                } else {
                    vec![Output::Star(name.clone())]
                }
            }
            Item::Derived { columns, any, .. } => {
                let mut out: Vec<Output> = columns
                    .iter()
                    .map(|(_, o)| Output::Column(o.clone()))
                    .collect();
                if let Some(any) = any {
                    out.push(Output::Column(any.clone()));
                }
                out
            }
            Item::Join { items, .. } => items.iter().flat_map(Item::star).collect(),
        }
    }

    /// The origin of column `name` of this item, if it may have one.
    pub(super) fn column(&self, name: &str) -> Option<Origin> {
        match self {
            Item::Base {
                name: relation,
                renamed,
                ..
            } => Some(Origin {
                sources: [Source {
                    relation: relation.clone(),
                    part: if *renamed {
                        Part::AnyColumn
                    } else {
                        Part::Column(name.to_owned())
                    },
                }]
                .into(),
                direct: true,
            }),
            Item::Derived { columns, any, .. } => {
                let named = |wanted: Option<&str>| {
                    let mut found: Option<Origin> = None;
                    for (_, origin) in columns.iter().filter(|(n, _)| n.as_deref() == wanted) {
                        match &mut found {
                            Some(f) => f.merge(origin.clone()),
                            None => found = Some(origin.clone()),
                        }
                    }
                    found
                };
                // A name no column has may be a column whose name the walk could not tell.
                named(Some(name)).or_else(|| {
                    let mut unnamed = named(None);
                    if let Some(any) = any {
                        match &mut unnamed {
                            Some(u) => u.merge(any.clone()),
                            None => unnamed = Some(any.clone()),
                        }
                    }
                    unnamed
                })
            }
            Item::Join { items, .. } => {
                let mut found: Option<Origin> = None;
                for origin in items.iter().filter_map(|i| i.column(name)) {
                    match &mut found {
                        Some(f) => f.merge(origin),
                        None => found = Some(origin),
                    }
                }
                found
            }
        }
    }
}

/// Names visible at one level of a statement: its `FROM` items and `WITH` queries, and the
/// enclosing level's (correlated sub-selects, `LATERAL`).
#[derive(Debug, Default)]
pub(super) struct Scope<'p> {
    pub(super) items: Vec<Item>,
    pub(super) ctes: Vec<(String, Columns)>,
    pub(super) parent: Option<&'p Scope<'p>>,
}

impl<'p> Scope<'p> {
    pub(super) fn child(parent: &'p Scope<'p>) -> Self {
        Self {
            items: Vec::new(),
            ctes: Vec::new(),
            parent: Some(parent),
        }
    }

    pub(super) fn cte(&self, name: &str) -> Option<&Vec<(Option<String>, Origin)>> {
        self.ctes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .or_else(|| self.parent?.cte(name))
    }

    pub(super) fn item(&self, alias: &str) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| i.alias() == Some(alias))
            .or_else(|| self.parent?.item(alias))
    }

    /// An unqualified column reference: every item that may hold it, level by level; a level
    /// whose derived items name it decides (its stored relations may not have it, but cannot
    /// be told apart), otherwise the search goes on outwards. A name that is also an item's
    /// alias may be that item's whole row.
    pub(super) fn unqualified(&self, name: &str) -> Origin {
        let mut origin = Origin {
            sources: BTreeSet::new(),
            direct: true,
        };
        let mut level = Some(self);
        while let Some(scope) = level {
            let mut named = false;
            for item in &scope.items {
                if let Some(found) = item.column(name) {
                    named |= matches!(item, Item::Derived { columns, .. }
                        if columns.iter().any(|(n, _)| n.as_deref() == Some(name)));
                    origin.merge(found);
                }
                if item.alias() == Some(name) {
                    origin.merge(item.whole_row());
                }
            }
            if named {
                break;
            }
            level = scope.parent;
        }
        origin
    }
}
