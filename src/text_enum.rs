//! Enums stored as text: one macro gives each its text form, its parse, and its diesel
//! mapping, so a row holds the enum itself and a stored value this build does not know is
//! a read error, never a silent default.

/// Declares an enum whose variants are stored as the given texts (keep them equal to the
/// serde names). Generates `ALL`, `as_str`, `parse`, and diesel's `ToSql`/`FromSql` for
/// `Text`.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = diesel::sql_types::Text)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and serialized) text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant stored as `s`, if this build knows it.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                std::io::Write::write_all(out, self.as_str().as_bytes())?;
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    diesel::pg::Pg,
                >>::from_sql(value)?;
                $name::parse(&text).ok_or_else(|| {
                    format!("{} `{text}` is unknown to this build", stringify!($name)).into()
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::charges::ChargeSource;
    use crate::customers::CustomerStatus;

    /// The stored text is the serialized name, for every variant.
    #[test]
    fn stored_texts_are_the_serde_names() {
        for s in CustomerStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(CustomerStatus::parse(s.as_str()), Some(*s));
        }
        for s in ChargeSource::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(ChargeSource::parse(s.as_str()), Some(*s));
        }
        assert_eq!(CustomerStatus::parse("archived"), None);
    }
}
