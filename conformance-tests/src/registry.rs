//! Every case by name, generated from the list in `lib.rs`.

use futures::future::BoxFuture;

use crate::{CaseResult, Ctx};

/// One conformance case: its name (`module::case`) and how to run it.
#[derive(Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub run: for<'a> fn(&'a Ctx) -> BoxFuture<'a, CaseResult>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

macro_rules! registry {
    ($($module:ident { $($case:ident),* $(,)? })*) => {
        /// Every case, in the order of the list in `lib.rs`.
        pub fn cases() -> Vec<Case> {
            vec![$($(
                Case {
                    name: concat!(stringify!($module), "::", stringify!($case)),
                    run: |ctx| Box::pin(crate::$module::$case(ctx)),
                },
            )*)*]
        }
    };
}

for_each_case!(registry);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = cases().iter().map(|c| c.name).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total);
    }
}
