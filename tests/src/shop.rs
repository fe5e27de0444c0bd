//! The `shop` demo dataset: a small, realistic-looking customer and order database whose
//! `email` and `card_number` columns are what jitgate's masking and policy tests protect.
//!
//! Every name, e-mail address and card number is fake. Card numbers are 16-digit test numbers on
//! the public test prefixes (Visa 4111…, 4242…, Mastercard 5555…, 5105…) with a valid Luhn check
//! digit, so masking code that validates Luhn treats them as real card numbers.

/// Name of the database created by [`crate::postgres::PgServer::load_shop_dataset`] in demos.
pub const SHOP_DB: &str = "shop";

/// One fake customer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// `customers.name`.
    pub name: String,
    /// `customers.email`, `first.last@example.com`.
    pub email: String,
    /// `customers.card_number`, 16 digits, Luhn-valid.
    pub card_number: String,
}

const NAMES: [&str; 20] = [
    "Ana Lima",
    "Bruno Costa",
    "Chen Wei",
    "Dara Okafor",
    "Elif Yilmaz",
    "Farah Haddad",
    "Gustav Berg",
    "Hana Sato",
    "Ivan Petrov",
    "Julia Novak",
    "Kwame Mensah",
    "Lucia Romero",
    "Mateo Silva",
    "Nadia Karim",
    "Oskar Nilsson",
    "Priya Nair",
    "Quentin Moreau",
    "Rosa Esposito",
    "Sven Larsen",
    "Tamar Levi",
];

const CARD_PREFIXES: [&str; 4] = ["411111", "424242", "555555", "510510"];

/// The Luhn check digit for `payload` (all ASCII digits), per ISO/IEC 7812-1 annex B.
pub fn luhn_check_digit(payload: &str) -> u8 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    // The value fits: it is always 0..=9.
    ((10 - sum % 10) % 10) as u8
}

/// Whether `number` (all ASCII digits) passes the Luhn check.
pub fn luhn_valid(number: &str) -> bool {
    match number.split_at_checked(number.len().saturating_sub(1)) {
        Some((payload, check)) if !payload.is_empty() => {
            check.as_bytes().first().map(|b| b - b'0') == Some(luhn_check_digit(payload))
        }
        _ => false,
    }
}

/// The 20 customers of the dataset, in id order (ids 1..=20).
pub fn customers() -> Vec<Customer> {
    NAMES
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
            let prefix = CARD_PREFIXES[index % CARD_PREFIXES.len()];
            let payload = format!("{prefix}{:09}", 111_111_111 + index * 7_654_321);
            let card_number = format!("{payload}{}", luhn_check_digit(&payload));
            Customer {
                name: (*name).to_owned(),
                email,
                card_number,
            }
        })
        .collect()
}

/// SQL that creates the `customers` and `orders` tables and fills them (run inside the target
/// database, as a superuser). Orders: 2 or 3 per customer, deterministic totals and timestamps.
pub fn shop_sql() -> String {
    let mut sql = String::from(
        "CREATE TABLE customers (\n\
         \x20   id serial PRIMARY KEY,\n\
         \x20   name text NOT NULL,\n\
         \x20   email text NOT NULL,\n\
         \x20   card_number text NOT NULL\n\
         );\n\
         CREATE TABLE orders (\n\
         \x20   id serial PRIMARY KEY,\n\
         \x20   customer_id int NOT NULL REFERENCES customers(id),\n\
         \x20   total_cents int NOT NULL,\n\
         \x20   created_at timestamptz NOT NULL\n\
         );\n",
    );
    let rows: Vec<String> = customers()
        .iter()
        .map(|c| {
            format!(
                "({}, {}, {})",
                quote_literal(&c.name),
                quote_literal(&c.email),
                quote_literal(&c.card_number)
            )
        })
        .collect();
    sql.push_str("INSERT INTO customers (name, email, card_number) VALUES\n");
    sql.push_str(&rows.join(",\n"));
    sql.push_str(";\n");

    let mut orders = Vec::new();
    for customer_id in 1..=NAMES.len() {
        for n in 0..(2 + customer_id % 2) {
            let total_cents = 1_299 + (customer_id * 3_517 + n * 911) % 48_000;
            let day = 1 + (customer_id + n * 9) % 28;
            orders.push(format!(
                "({customer_id}, {total_cents}, '2024-03-{day:02} 1{n}:15:00+00')"
            ));
        }
    }
    sql.push_str("INSERT INTO orders (customer_id, total_cents, created_at) VALUES\n");
    sql.push_str(&orders.join(",\n"));
    sql.push_str(";\n");
    sql
}

/// `value` as a SQL string literal (single quotes doubled; standard_conforming_strings on).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `name` as a SQL identifier (double quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_matches_known_test_numbers() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("4242424242424242"));
        assert!(luhn_valid("5555555555554444"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid(""));
    }

    #[test]
    fn customers_are_realistic_and_distinct() {
        let all = customers();
        assert_eq!(all.len(), 20);
        assert_eq!(all[0].email, "ana.lima@example.com");
        for customer in &all {
            assert_eq!(customer.card_number.len(), 16, "{customer:?}");
            assert!(luhn_valid(&customer.card_number), "{customer:?}");
        }
        let mut cards: Vec<_> = all.iter().map(|c| &c.card_number).collect();
        cards.sort();
        cards.dedup();
        assert_eq!(cards.len(), 20);
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_literal("O'Brien"), "'O''Brien'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
