-- A rep's discount limit, and proposals with a discount. The proposal writer's discount beyond the
-- limit of the deal's owner waits for a manager's approval (`approvals`, subject `proposal`), and
-- the proposal cannot be sent until it is approved.
ALTER TABLE rep_profiles
    ADD COLUMN max_discount_bps integer NOT NULL DEFAULT 500
        CHECK (max_discount_bps BETWEEN 0 AND 10000);
ALTER TABLE proposals
    ADD COLUMN discount_bps integer CHECK (discount_bps BETWEEN 0 AND 10000);
ALTER TABLE approvals DROP CONSTRAINT approvals_subject_type_check,
    ADD CONSTRAINT approvals_subject_type_check
        CHECK (subject_type IN ('guarantee_claim', 'commission', 'deal', 'proposal'));
