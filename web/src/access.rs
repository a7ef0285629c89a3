//! Roles and access levels.
//!
//! Operator and analyst share a rank: they are different jobs (acting on
//! alarms vs. working with history and models) but neither outranks the
//! other, so a route that needs one of them accepts the other too.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Analyst,
    Engineer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Analyst,
        Role::Engineer,
        Role::Admin,
    ];

    pub fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Operator | Role::Analyst => 1,
            Role::Engineer => 2,
            Role::Admin => 3,
        }
    }

    /// Whether this role may use something that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Analyst => "analyst",
            Role::Engineer => "engineer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = crate::WebError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                crate::WebError::Invalid(format!(
                    "unknown role {s:?}; valid roles are: viewer, operator, analyst, engineer, admin"
                ))
            })
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone, no session needed and no check made.
    Public,
    /// A session whose role allows this one.
    Role(Role),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ordering() {
        assert!(Role::Admin.allows(Role::Engineer));
        assert!(Role::Engineer.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Analyst));
        assert!(Role::Analyst.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Engineer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Engineer.allows(Role::Admin));
        for r in Role::ALL {
            assert!(r.allows(Role::Viewer));
            assert!(r.allows(r));
        }
    }

    #[test]
    fn parse_round_trip_and_error() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let err = "Admin".parse::<Role>().unwrap_err().to_string();
        assert!(
            err.contains("viewer, operator, analyst, engineer, admin"),
            "{err}"
        );
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
