// @generated automatically by Diesel CLI.

diesel::table! {
    accounts (id) {
        id -> Uuid,
        code -> Text,
        name -> Text,
        unit -> Text,
        customer_id -> Nullable<Uuid>,
        normal_side -> Text,
        no_overdraft -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        key_hash -> Bytea,
        role -> Text,
        customer_id -> Nullable<Uuid>,
        label -> Nullable<Text>,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    balances (account_id) {
        account_id -> Uuid,
        unit -> Text,
        unit_scale -> Int2,
        normal_side -> Text,
        no_overdraft -> Bool,
        posted_debits -> Numeric,
        posted_credits -> Numeric,
        pending_debits -> Numeric,
        pending_credits -> Numeric,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    holds (id) {
        id -> Uuid,
        idempotency_key -> Text,
        request_hash -> Bytea,
        debit_account_id -> Uuid,
        credit_account_id -> Uuid,
        unit -> Text,
        amount -> Numeric,
        status -> Text,
        expires_at -> Timestamptz,
        metadata -> Jsonb,
        captured_amount -> Nullable<Numeric>,
        capture_transaction_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    postings (id) {
        id -> Int8,
        transaction_id -> Uuid,
        account_id -> Uuid,
        side -> Text,
        amount -> Numeric,
        unit -> Text,
    }
}

diesel::table! {
    transactions (id) {
        id -> Uuid,
        kind -> Text,
        idempotency_key -> Text,
        request_hash -> Bytea,
        effective_at -> Timestamptz,
        description -> Nullable<Text>,
        metadata -> Jsonb,
        reverses -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    units (code) {
        code -> Text,
        scale -> Int2,
    }
}

diesel::joinable!(accounts -> units (unit));
diesel::joinable!(balances -> accounts (account_id));
diesel::joinable!(holds -> transactions (capture_transaction_id));
diesel::joinable!(postings -> accounts (account_id));
diesel::joinable!(postings -> transactions (transaction_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    api_keys,
    balances,
    holds,
    postings,
    transactions,
    units,
);
