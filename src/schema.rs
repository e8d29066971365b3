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
    appointment_period_closes (subscription_id, period_index) {
        subscription_id -> Uuid,
        period_index -> Int4,
        closed_at -> Timestamptz,
        overage -> Int4,
    }
}

diesel::table! {
    appointments (id) {
        id -> Uuid,
        subscription_id -> Uuid,
        period_index -> Int4,
        overage -> Bool,
        booked_at -> Timestamptz,
        idempotency_key -> Text,
    }
}

diesel::table! {
    authorizations (id) {
        id -> Uuid,
        customer_id -> Uuid,
        request_ref -> Text,
        request_hash -> Bytea,
        request -> Jsonb,
        decision -> Text,
        funding -> Nullable<Text>,
        reason -> Text,
        status -> Text,
        price -> Nullable<Numeric>,
        hourly -> Bool,
        offer_code -> Nullable<Text>,
        credits -> Nullable<Numeric>,
        subscription_id -> Nullable<Uuid>,
        hold_ids -> Array<Nullable<Uuid>>,
        expires_at -> Nullable<Timestamptz>,
        take_charge_due_at -> Nullable<Timestamptz>,
        captured_units -> Nullable<Numeric>,
        created_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
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
    charges (id) {
        id -> Uuid,
        customer_id -> Uuid,
        subscription_id -> Nullable<Uuid>,
        offer_code -> Nullable<Text>,
        source -> Text,
        period_index -> Nullable<Int4>,
        description -> Text,
        quantity -> Numeric,
        unit_price -> Numeric,
        price_basis -> Text,
        vat_rate -> Numeric,
        service_start -> Nullable<Date>,
        service_end -> Nullable<Date>,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamptz,
        invoice_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    credit_lots (id) {
        id -> Uuid,
        customer_id -> Uuid,
        account_id -> Uuid,
        origin -> Text,
        subscription_id -> Nullable<Uuid>,
        term_index -> Nullable<Int4>,
        granted -> Numeric,
        unit_price -> Numeric,
        granted_at -> Timestamptz,
        expires_at -> Timestamptz,
        expired_at -> Nullable<Timestamptz>,
        idempotency_key -> Nullable<Text>,
        invoice_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    credit_note_lines (credit_note_id, position) {
        credit_note_id -> Uuid,
        position -> Int4,
        charge_id -> Uuid,
        description -> Text,
        quantity -> Nullable<Numeric>,
        unit_price -> Numeric,
        price_basis -> Text,
        vat_rate -> Numeric,
        net_ht -> Numeric,
    }
}

diesel::table! {
    credit_note_vat (credit_note_id, vat_rate) {
        credit_note_id -> Uuid,
        vat_rate -> Numeric,
        base_ht -> Numeric,
        vat -> Numeric,
    }
}

diesel::table! {
    credit_notes (id) {
        id -> Uuid,
        number -> Text,
        series -> Text,
        year -> Int4,
        seq -> Int8,
        invoice_id -> Uuid,
        customer_id -> Uuid,
        issued_on -> Date,
        reason -> Text,
        total_ht -> Numeric,
        total_vat -> Numeric,
        total_ttc -> Numeric,
        applied_to_invoice -> Numeric,
        to_credit_balance -> Numeric,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    customers (id) {
        id -> Uuid,
        legal_name -> Text,
        siren -> Text,
        siret -> Nullable<Text>,
        vat_number -> Nullable<Text>,
        billing_email -> Text,
        street_number -> Nullable<Text>,
        street -> Text,
        postcode -> Text,
        town -> Text,
        country -> Text,
        status -> Text,
        idempotency_key -> Nullable<Text>,
        request_hash -> Nullable<Bytea>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    document_counters (kind, year) {
        kind -> Text,
        year -> Int4,
        last_seq -> Int8,
        last_issued_on -> Nullable<Date>,
    }
}

diesel::table! {
    formal_notices (id) {
        id -> Uuid,
        customer_id -> Uuid,
        sent_on -> Date,
        amount -> Numeric,
        status -> Text,
        closed_on -> Nullable<Date>,
        created_at -> Timestamptz,
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
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        operation -> Text,
        request_hash -> Bytea,
        response -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    interventions (id) {
        id -> Uuid,
        authorization_id -> Uuid,
        customer_id -> Uuid,
        offer_code -> Text,
        description -> Text,
        quantity -> Numeric,
        unit_price -> Numeric,
        sheet_at -> Timestamptz,
        dispute_deadline -> Timestamptz,
        status -> Text,
        disputed_at -> Nullable<Timestamptz>,
        resolved_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    invoice_direct_debits (invoice_id) {
        invoice_id -> Uuid,
        mandate_id -> Uuid,
        mandate_reference -> Text,
        creditor_id -> Text,
        debtor_iban -> Text,
        amount -> Numeric,
        collection_on -> Date,
    }
}

diesel::table! {
    invoice_lines (invoice_id, position) {
        invoice_id -> Uuid,
        position -> Int4,
        charge_id -> Uuid,
        description -> Text,
        quantity -> Numeric,
        unit_price -> Numeric,
        price_basis -> Text,
        unit_price_ht -> Numeric,
        vat_rate -> Numeric,
        net_ht -> Numeric,
        service_start -> Nullable<Date>,
        service_end -> Nullable<Date>,
    }
}

diesel::table! {
    invoice_run_errors (run_id, customer_id) {
        run_id -> Uuid,
        customer_id -> Uuid,
        error -> Text,
    }
}

diesel::table! {
    invoice_runs (id) {
        id -> Uuid,
        as_of -> Timestamptz,
        status -> Text,
        customers_total -> Int4,
        customers_done -> Int4,
        customers_failed -> Int4,
        invoices_issued -> Int4,
        total_ht -> Numeric,
        total_vat -> Numeric,
        total_ttc -> Numeric,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    invoice_settlements (id) {
        id -> Uuid,
        invoice_id -> Uuid,
        customer_id -> Uuid,
        kind -> Text,
        source_id -> Uuid,
        amount -> Numeric,
        settled_on -> Date,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    invoice_vat (invoice_id, vat_rate) {
        invoice_id -> Uuid,
        vat_rate -> Numeric,
        base_ht -> Numeric,
        vat -> Numeric,
    }
}

diesel::table! {
    invoices (id) {
        id -> Uuid,
        number -> Text,
        series -> Text,
        year -> Int4,
        seq -> Int8,
        customer_id -> Uuid,
        issued_on -> Date,
        due_on -> Date,
        status -> Text,
        total_ht -> Numeric,
        total_vat -> Numeric,
        total_ttc -> Numeric,
        created_at -> Timestamptz,
        mentions -> Nullable<Jsonb>,
    }
}

diesel::table! {
    mandate_amendments (id) {
        id -> Uuid,
        mandate_id -> Uuid,
        previous_iban -> Nullable<Text>,
        previous_bic -> Nullable<Text>,
        previous_debtor_name -> Nullable<Text>,
        bic_changed -> Bool,
        amended_on -> Date,
        created_at -> Timestamptz,
        reported_in -> Nullable<Uuid>,
    }
}

diesel::table! {
    mandates (id) {
        id -> Uuid,
        customer_id -> Uuid,
        reference -> Text,
        signed_on -> Date,
        status -> Text,
        created_at -> Timestamptz,
        debtor_name -> Nullable<Text>,
        iban -> Nullable<Text>,
        bic -> Nullable<Text>,
        scheme -> Text,
        last_collected_on -> Nullable<Date>,
        status_changed_at -> Nullable<Timestamptz>,
        status_reason -> Nullable<Text>,
        payment_type -> Text,
        final_requested_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    offer_prices (offer_code, effective_from) {
        offer_code -> Text,
        effective_from -> Date,
        unit_price -> Numeric,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    offers (code) {
        code -> Text,
        name -> Text,
        billing_period -> Text,
        price_basis -> Text,
        vat_rate -> Numeric,
        commitment_months -> Int4,
        renewal_months -> Int4,
        notice_days -> Int4,
        early_termination_rate -> Numeric,
        sepa_required -> Bool,
        activation_on_payment -> Bool,
        addon -> Bool,
        free_diagnostics -> Bool,
        assistance_included -> Bool,
        maintenance -> Bool,
        appointment_quota -> Nullable<Int4>,
        credits_per_term -> Nullable<Numeric>,
        unit_credit_purchase -> Bool,
        credit_price -> Nullable<Numeric>,
        increment_minutes -> Nullable<Int4>,
        created_at -> Timestamptz,
        unit_credit_offer -> Nullable<Text>,
        overage_offer -> Nullable<Text>,
        catalog_role -> Nullable<Text>,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        customer_id -> Uuid,
        reference -> Text,
        method -> Text,
        amount -> Numeric,
        value_date -> Date,
        received_at -> Timestamptz,
        created_at -> Timestamptz,
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
    refunds (id) {
        id -> Uuid,
        customer_id -> Uuid,
        reference -> Text,
        amount -> Numeric,
        value_date -> Date,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sepa_batches (id) {
        id -> Uuid,
        message_id -> Text,
        collection_date -> Date,
        status -> Text,
        collections -> Int4,
        total -> Numeric,
        created_at -> Timestamptz,
        submitted_at -> Nullable<Timestamptz>,
        settled_at -> Nullable<Timestamptz>,
        value_date -> Nullable<Date>,
    }
}

diesel::table! {
    sepa_collections (id) {
        id -> Uuid,
        batch_id -> Uuid,
        invoice_id -> Uuid,
        customer_id -> Uuid,
        mandate_id -> Uuid,
        end_to_end_id -> Text,
        attempt -> Int4,
        amount -> Numeric,
        sequence_type -> Text,
        scheme -> Text,
        mandate_reference -> Text,
        mandate_signed_on -> Date,
        debtor_name -> Text,
        debtor_iban -> Text,
        debtor_bic -> Nullable<Text>,
        debtor_address -> Jsonb,
        amended_from_iban -> Nullable<Text>,
        status -> Text,
        payment_id -> Nullable<Uuid>,
        return_reason -> Nullable<Text>,
        return_file_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    sepa_return_files (id) {
        id -> Uuid,
        message_id -> Text,
        format -> Text,
        imported_at -> Timestamptz,
        report -> Jsonb,
    }
}

diesel::table! {
    subscription_events (id) {
        id -> Int8,
        subscription_id -> Uuid,
        kind -> Text,
        at -> Timestamptz,
        detail -> Jsonb,
        term_index -> Nullable<Int4>,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Uuid,
        customer_id -> Uuid,
        offer_code -> Text,
        parent_id -> Nullable<Uuid>,
        status -> Text,
        anchor_date -> Nullable<Date>,
        start_date -> Date,
        cancel_received_at -> Nullable<Timestamptz>,
        ends_at -> Nullable<Timestamptz>,
        terminated_at -> Nullable<Timestamptz>,
        idempotency_key -> Nullable<Text>,
        request_hash -> Nullable<Bytea>,
        created_at -> Timestamptz,
        cancel_received_on -> Nullable<Date>,
        termination_received_on -> Nullable<Date>,
    }
}

diesel::table! {
    ticket_purchases (id) {
        id -> Uuid,
        customer_id -> Uuid,
        quantity -> Int4,
        status -> Text,
        idempotency_key -> Nullable<Text>,
        request_hash -> Nullable<Bytea>,
        created_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        charge_id -> Nullable<Uuid>,
        credited -> Int4,
        invoice_id -> Nullable<Uuid>,
        net_ht -> Nullable<Numeric>,
        tickets_used -> Int4,
        recognized -> Numeric,
        returns -> Int4,
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
diesel::joinable!(appointment_period_closes -> subscriptions (subscription_id));
diesel::joinable!(appointments -> subscriptions (subscription_id));
diesel::joinable!(authorizations -> customers (customer_id));
diesel::joinable!(authorizations -> subscriptions (subscription_id));
diesel::joinable!(balances -> accounts (account_id));
diesel::joinable!(charges -> customers (customer_id));
diesel::joinable!(charges -> offers (offer_code));
diesel::joinable!(charges -> subscriptions (subscription_id));
diesel::joinable!(credit_lots -> accounts (account_id));
diesel::joinable!(credit_lots -> customers (customer_id));
diesel::joinable!(credit_lots -> invoices (invoice_id));
diesel::joinable!(credit_lots -> subscriptions (subscription_id));
diesel::joinable!(credit_note_lines -> credit_notes (credit_note_id));
diesel::joinable!(credit_note_vat -> credit_notes (credit_note_id));
diesel::joinable!(credit_notes -> customers (customer_id));
diesel::joinable!(credit_notes -> invoices (invoice_id));
diesel::joinable!(formal_notices -> customers (customer_id));
diesel::joinable!(interventions -> authorizations (authorization_id));
diesel::joinable!(interventions -> customers (customer_id));
diesel::joinable!(invoice_direct_debits -> invoices (invoice_id));
diesel::joinable!(invoice_direct_debits -> mandates (mandate_id));
diesel::joinable!(invoice_lines -> charges (charge_id));
diesel::joinable!(invoice_lines -> invoices (invoice_id));
diesel::joinable!(invoice_run_errors -> customers (customer_id));
diesel::joinable!(invoice_run_errors -> invoice_runs (run_id));
diesel::joinable!(invoice_settlements -> customers (customer_id));
diesel::joinable!(invoice_settlements -> invoices (invoice_id));
diesel::joinable!(invoice_vat -> invoices (invoice_id));
diesel::joinable!(invoices -> customers (customer_id));
diesel::joinable!(mandate_amendments -> mandates (mandate_id));
diesel::joinable!(mandate_amendments -> sepa_batches (reported_in));
diesel::joinable!(mandates -> customers (customer_id));
diesel::joinable!(offer_prices -> offers (offer_code));
diesel::joinable!(payments -> customers (customer_id));
diesel::joinable!(refunds -> customers (customer_id));
diesel::joinable!(sepa_collections -> customers (customer_id));
diesel::joinable!(sepa_collections -> invoices (invoice_id));
diesel::joinable!(sepa_collections -> mandates (mandate_id));
diesel::joinable!(sepa_collections -> payments (payment_id));
diesel::joinable!(sepa_collections -> sepa_batches (batch_id));
diesel::joinable!(sepa_collections -> sepa_return_files (return_file_id));
diesel::joinable!(subscription_events -> subscriptions (subscription_id));
diesel::joinable!(subscriptions -> customers (customer_id));
diesel::joinable!(subscriptions -> offers (offer_code));
diesel::joinable!(ticket_purchases -> charges (charge_id));
diesel::joinable!(ticket_purchases -> customers (customer_id));
diesel::joinable!(ticket_purchases -> invoices (invoice_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    api_keys,
    appointment_period_closes,
    appointments,
    authorizations,
    balances,
    charges,
    credit_lots,
    credit_note_lines,
    credit_note_vat,
    credit_notes,
    customers,
    document_counters,
    formal_notices,
    holds,
    idempotency_keys,
    interventions,
    invoice_direct_debits,
    invoice_lines,
    invoice_run_errors,
    invoice_runs,
    invoice_settlements,
    invoice_vat,
    invoices,
    mandate_amendments,
    mandates,
    offer_prices,
    offers,
    payments,
    postings,
    refunds,
    sepa_batches,
    sepa_collections,
    sepa_return_files,
    subscription_events,
    subscriptions,
    ticket_purchases,
    transactions,
    units,
);
