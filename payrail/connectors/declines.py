"""payrail's unified decline and error taxonomy.

Every connector turns its provider's answer into one ``Classification``: a payrail code
(Stripe-flavoured), a ``Decision`` that tells dunning and failover what they may do, and a
customer-safe message. ``TAXONOMY`` maps ``(provider, provider_code)`` to it; failures that carry
no provider code at all go through ``classify_transport``.

Provider codes, as the connector should pass them:

- ``stripe`` / ``sandbox``: ``error.decline_code`` when present, else ``error.code``.
  https://docs.stripe.com/declines/codes and https://docs.stripe.com/error-codes
- ``adyen``: ``refusalReasonCode`` as a string ("2", "12", ...), when ``resultCode`` is
  Refused, Error or Cancelled. https://docs.adyen.com/development-resources/refusal-reasons
- ``paypal``: ``processor_response.response_code`` of a card payment source ("5120", "PPEF",
  ...), else the Orders API error ``details[].issue`` ("INSTRUMENT_DECLINED", ...), else the error
  ``name`` ("RATE_LIMIT_REACHED", ...). The three vocabularies share no string.
  https://developer.paypal.com/api/handle-payment-failures and
  https://developer.paypal.com/api/rest/responses/
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Decision(StrEnum):
    HARD_DECLINE = "hard_decline"
    """The issuer refused for good: never retry the same card; the customer must update it."""
    SOFT_DECLINE = "soft_decline"
    """Refused now, may succeed later: dunning retries on its schedule."""
    TECHNICAL = "technical"
    """No decision was reached: retry now, possibly on another connector."""
    IN_DOUBT = "in_doubt"
    """It may have gone through: never charge again, never fail over; ask the PSP."""
    AUTHENTICATION_REQUIRED = "authentication_required"
    """The customer must authenticate (3DS, PIN, device); a plain retry will not help."""


@dataclass(frozen=True, slots=True)
class Classification:
    code: str
    decision: Decision
    message: str


_HARD: Final = Decision.HARD_DECLINE
_SOFT: Final = Decision.SOFT_DECLINE
_TECH: Final = Decision.TECHNICAL
_DOUBT: Final = Decision.IN_DOUBT
_AUTH: Final = Decision.AUTHENTICATION_REQUIRED

# Fraud, lost and stolen answers get the bare decline message, as Stripe shows them: naming them
# would tell a card tester which numbers are flagged.
_DECLINED: Final = "Your card was declined."
_UPDATE: Final = "Your card was declined. Please update your payment details."
_NOT_NOW: Final = "The payment could not be processed right now. Please try again."
_NOT_PROCESSED: Final = "The payment could not be processed."
_CHECKING: Final = "We could not confirm your payment yet. Please do not pay again while we check."

# payrail code -> decision and message. One decision per code, so a code means the same thing
# whichever provider it came from.
_PAYRAIL: Final[dict[str, tuple[Decision, str]]] = {
    # --- hard: the same card will be refused again -------------------------------------------
    "card_not_supported": (_HARD, "Your card does not support this type of purchase."),
    "currency_not_supported": (_HARD, "Your card does not support this currency."),
    "do_not_try_again": (_HARD, _UPDATE),
    "expired_card": (_HARD, "Your card has expired."),
    "fraudulent": (_HARD, _DECLINED),
    # Wrong card details fail identically on every retry: the customer must re-enter them.
    "incorrect_address": (_HARD, "Your card's address is incorrect."),
    "incorrect_cvc": (_HARD, "Your card's security code is incorrect."),
    "incorrect_number": (_HARD, "Your card number is incorrect."),
    "incorrect_pin": (_HARD, "The PIN you entered is incorrect."),
    "incorrect_zip": (_HARD, "Your card's postal code is incorrect."),
    "invalid_account": (
        _HARD,
        "The account behind this payment method is invalid or closed. "
        "Please use a different payment method.",
    ),
    "invalid_cvc": (_HARD, "Your card's security code is invalid."),
    "invalid_expiry_date": (_HARD, "Your card's expiration date is invalid."),
    "invalid_expiry_month": (_HARD, "Your card's expiration month is invalid."),
    "invalid_expiry_year": (_HARD, "Your card's expiration year is invalid."),
    "invalid_number": (_HARD, "Your card number is invalid."),
    "invalid_pin": (_HARD, "The PIN you entered is invalid."),
    "lost_card": (_HARD, _DECLINED),
    "lost_or_stolen_card": (_HARD, _DECLINED),
    "merchant_blacklist": (_HARD, _DECLINED),
    "new_account_information_available": (
        _HARD,
        "Your card details have changed. Please update your payment details.",
    ),
    "not_permitted": (_HARD, "This payment is not permitted on your card."),
    "payment_method_unusable": (
        _HARD,
        "This payment method can't be used for this payment. Please use a different one.",
    ),
    "pickup_card": (_HARD, _DECLINED),
    "pin_try_exceeded": (_HARD, "Too many incorrect PIN attempts. Please use a different card."),
    "restricted_card": (_HARD, _DECLINED),
    # The cardholder told the bank to stop paying us: retrying invites a dispute.
    "revocation_of_all_authorizations": (_HARD, _UPDATE),
    "revocation_of_authorization": (_HARD, _UPDATE),
    "security_violation": (_HARD, _DECLINED),
    "service_not_allowed": (_HARD, _DECLINED),
    "stolen_card": (_HARD, _DECLINED),
    "stop_payment_order": (_HARD, _UPDATE),
    "testmode_decline": (_HARD, "Your card was declined. A test card can't be used here."),
    "transaction_not_allowed": (_HARD, "Your card does not allow this payment."),
    # --- soft: may succeed later ---------------------------------------------------------------
    "approve_with_id": (_SOFT, "Your payment could not be authorized. Please try again later."),
    "call_issuer": (_SOFT, "Your card was declined. Please contact your card issuer."),
    "card_decline_rate_limit_exceeded": (
        _SOFT,
        "Your card was declined too many times recently. Please try again later.",
    ),
    "card_velocity_exceeded": (_SOFT, "This payment exceeds a limit on your card."),
    "customer_canceled": (_SOFT, "The payment was canceled before it was completed."),
    # Without a fraud flag, do_not_honor says only "no"; issuers use it for funds and risk alike.
    "do_not_honor": (_SOFT, _DECLINED),
    "generic_decline": (_SOFT, _DECLINED),
    "insufficient_funds": (_SOFT, "Your card has insufficient funds."),
    "invalid_amount": (_SOFT, "The payment amount is invalid or more than your card allows."),
    "issuer_not_available": (
        _SOFT,
        "Your card issuer could not be reached. Please try again later.",
    ),
    "no_action_taken": (_SOFT, _DECLINED),
    # The processor answered with a failed payment, so nothing is in doubt; a retry later, not a
    # failover now, keeps us inside the schemes' retry limits.
    "processing_error": (
        _SOFT,
        "An error occurred while processing your card. Please try again later.",
    ),
    "reenter_transaction": (
        _SOFT,
        "Your card issuer could not process this payment. Please try again.",
    ),
    "try_again_later": (_SOFT, "Your card was declined. Please try again later."),
    "withdrawal_count_limit_exceeded": (
        _SOFT,
        "Your card has reached its limit of payments for now. Please try again later.",
    ),
    # --- authentication: the customer has to act ------------------------------------------------
    "authentication_failed": (
        _AUTH,
        "Your payment could not be authenticated. Please try again or use a different card.",
    ),
    "authentication_not_handled": (_AUTH, "This payment requires authentication."),
    "authentication_required": (
        _AUTH,
        "Your card was declined. This payment requires authentication.",
    ),
    "mobile_device_authentication_required": (
        _AUTH,
        "Please authenticate this payment on your mobile device.",
    ),
    "offline_pin_required": (_AUTH, "Your card requires a PIN for this payment."),
    "online_or_offline_pin_required": (_AUTH, "Your card requires a PIN for this payment."),
    # --- technical: nothing was decided, another attempt is safe -------------------------------
    "connector_credentials_invalid": (_TECH, _NOT_PROCESSED),
    "connector_request_invalid": (_TECH, _NOT_PROCESSED),
    "connector_unreachable": (_TECH, _NOT_NOW),
    "rate_limit": (_TECH, _NOT_NOW),
    # --- in doubt: the money may have moved ----------------------------------------------------
    "connector_error": (_DOUBT, _CHECKING),
    # An identical payment was just made: it may be ours, so a new charge could be a double one.
    "duplicate_transaction": (
        _DOUBT,
        "A payment with the same details was just made. Please check it before paying again.",
    ),
    "payment_in_progress": (_DOUBT, "Your payment is already being processed."),
    "timeout": (_DOUBT, _CHECKING),
}

# Stripe's documented card decline codes, which are payrail's own, then the API error codes a
# charge can fail with (error.code, used when there is no decline_code).
_STRIPE: Final[tuple[tuple[str, str], ...]] = (
    ("approve_with_id", "approve_with_id"),
    ("authentication_not_handled", "authentication_not_handled"),
    ("authentication_required", "authentication_required"),
    ("call_issuer", "call_issuer"),
    ("card_not_supported", "card_not_supported"),
    ("card_velocity_exceeded", "card_velocity_exceeded"),
    ("currency_not_supported", "currency_not_supported"),
    ("do_not_honor", "do_not_honor"),
    ("do_not_try_again", "do_not_try_again"),
    ("duplicate_transaction", "duplicate_transaction"),
    ("expired_card", "expired_card"),
    ("fraudulent", "fraudulent"),
    ("generic_decline", "generic_decline"),
    ("incorrect_address", "incorrect_address"),
    ("incorrect_cvc", "incorrect_cvc"),
    ("incorrect_number", "incorrect_number"),
    ("incorrect_pin", "incorrect_pin"),
    ("incorrect_zip", "incorrect_zip"),
    ("insufficient_funds", "insufficient_funds"),
    ("invalid_account", "invalid_account"),
    ("invalid_amount", "invalid_amount"),
    ("invalid_cvc", "invalid_cvc"),
    ("invalid_expiry_month", "invalid_expiry_month"),
    ("invalid_expiry_year", "invalid_expiry_year"),
    ("invalid_number", "invalid_number"),
    ("invalid_pin", "invalid_pin"),
    ("issuer_not_available", "issuer_not_available"),
    ("lost_card", "lost_card"),
    ("merchant_blacklist", "merchant_blacklist"),
    ("mobile_device_authentication_required", "mobile_device_authentication_required"),
    ("new_account_information_available", "new_account_information_available"),
    ("no_action_taken", "no_action_taken"),
    ("not_permitted", "not_permitted"),
    ("offline_pin_required", "offline_pin_required"),
    ("online_or_offline_pin_required", "online_or_offline_pin_required"),
    ("pickup_card", "pickup_card"),
    ("pin_try_exceeded", "pin_try_exceeded"),
    ("processing_error", "processing_error"),
    ("reenter_transaction", "reenter_transaction"),
    ("restricted_card", "restricted_card"),
    ("revocation_of_all_authorizations", "revocation_of_all_authorizations"),
    ("revocation_of_authorization", "revocation_of_authorization"),
    ("security_violation", "security_violation"),
    ("service_not_allowed", "service_not_allowed"),
    ("stolen_card", "stolen_card"),
    ("stop_payment_order", "stop_payment_order"),
    ("testmode_decline", "testmode_decline"),
    # The card does not belong to the mode: a real card in test mode, or a test card live.
    # Stripe sends these as decline codes; no retry can change the card's kind.
    ("test_mode_live_card", "testmode_decline"),
    ("live_mode_test_card", "testmode_decline"),
    ("transaction_not_allowed", "transaction_not_allowed"),
    ("try_again_later", "try_again_later"),
    ("withdrawal_count_limit_exceeded", "withdrawal_count_limit_exceeded"),
    # API error codes (https://docs.stripe.com/error-codes).
    ("api_key_expired", "connector_credentials_invalid"),
    ("card_decline_rate_limit_exceeded", "card_decline_rate_limit_exceeded"),
    ("card_declined", "generic_decline"),
    # Another request holds the key or the object: it may be confirming this very payment.
    ("idempotency_key_in_use", "payment_in_progress"),
    ("lock_timeout", "payment_in_progress"),
    ("payment_intent_action_required", "authentication_required"),
    ("payment_intent_authentication_failure", "authentication_failed"),
    ("rate_limit", "rate_limit"),
    ("setup_intent_authentication_failure", "authentication_failed"),
)

# Adyen refusalReasonCode. 0 comes with resultCode Authorised and is no failure, so it is absent.
_ADYEN: Final[tuple[tuple[str, str], ...]] = (
    ("2", "generic_decline"),  # Refused
    ("3", "call_issuer"),  # Referral
    ("4", "processing_error"),  # Acquirer Error
    # Blocked Card. Adyen names no lost or stolen reason; a blocked card is where those land.
    ("5", "restricted_card"),
    ("6", "expired_card"),  # Expired Card
    ("7", "invalid_amount"),  # Invalid Amount
    ("8", "incorrect_number"),  # Invalid Card Number
    ("9", "issuer_not_available"),  # Issuer Unavailable
    ("10", "card_not_supported"),  # Not supported
    ("11", "authentication_failed"),  # 3D Not Authenticated
    ("12", "insufficient_funds"),  # Not enough balance
    ("14", "fraudulent"),  # Acquirer Fraud
    # Cancelled, with no say by whom: the safe reading is an unexplained decline.
    ("15", "generic_decline"),
    ("16", "customer_canceled"),  # Shopper Cancelled
    ("17", "incorrect_pin"),  # Invalid Pin
    ("18", "pin_try_exceeded"),  # Pin tries exceeded
    ("19", "processing_error"),  # Pin validation not possible
    ("20", "fraudulent"),  # FRAUD (risk score, pre-authorisation)
    # Not Submitted: Adyen never sent it on, so nothing was decided; the request was at fault.
    ("21", "connector_request_invalid"),
    ("22", "fraudulent"),  # FRAUD-CANCELLED (risk score, post-authorisation)
    ("23", "transaction_not_allowed"),  # Transaction Not Permitted
    ("24", "incorrect_cvc"),  # CVC Declined
    ("25", "restricted_card"),  # Restricted Card
    ("26", "revocation_of_authorization"),  # Revocation Of Auth
    ("27", "generic_decline"),  # Declined Non Generic: a reason Adyen could not map
    ("28", "card_velocity_exceeded"),  # Withdrawal amount exceeded
    ("29", "withdrawal_count_limit_exceeded"),  # Withdrawal count exceeded
    ("31", "fraudulent"),  # Issuer Suspected Fraud
    ("32", "incorrect_address"),  # AVS Declined
    ("33", "online_or_offline_pin_required"),  # Card requires online pin
    ("34", "invalid_account"),  # No checking account available on Card
    ("35", "invalid_account"),  # No savings account available on Card
    ("36", "mobile_device_authentication_required"),  # Mobile pin required
    ("37", "customer_canceled"),  # Contactless fallback: the shopper gave up
    ("38", "authentication_required"),  # Authentication required
    ("39", "authentication_failed"),  # RReq not received from DS
    ("40", "processing_error"),  # Current AID is in Penalty Box
    ("41", "online_or_offline_pin_required"),  # CVM Required Restart Payment
    ("42", "authentication_failed"),  # 3DS Authentication Error
    # Blocked to spare the scheme's excessive-retry fees: retrying is exactly what must stop.
    ("46", "do_not_try_again"),
)

# PayPal: processor response codes first, then Orders API issues, then error names.
_PAYPAL: Final[tuple[tuple[str, str], ...]] = (
    ("00N7", "incorrect_cvc"),  # CVV2_FAILURE_POSSIBLE_RETRY_WITH_CVV
    ("0100", "call_issuer"),  # REFERRAL
    ("0390", "invalid_account"),  # ACCOUNT_NOT_FOUND
    ("0500", "do_not_honor"),  # DO_NOT_HONOR
    ("0580", "transaction_not_allowed"),  # UNAUTHORIZED_TRANSACTION
    ("0880", "processing_error"),  # CRYPTOGRAPHIC_FAILURE
    ("0890", "incorrect_pin"),  # UNACCEPTABLE_PIN
    ("0960", "processing_error"),  # SYSTEM_MALFUNCTION
    ("10BR", "generic_decline"),  # ISSUER_REJECTED
    ("1300", "connector_request_invalid"),  # INVALID_DATA_FORMAT
    ("1310", "invalid_amount"),  # INVALID_AMOUNT
    ("1312", "transaction_not_allowed"),  # INVALID_TRANSACTION_CARD_ISSUER_ACQUIRER
    ("1317", "connector_request_invalid"),  # INVALID_CAPTURE_DATE
    ("1320", "currency_not_supported"),  # INVALID_CURRENCY_CODE
    ("1330", "invalid_account"),  # INVALID_ACCOUNT
    ("1335", "invalid_account"),  # INVALID_ACCOUNT_RECURRING
    ("1340", "connector_request_invalid"),  # INVALID_TERMINAL
    ("1350", "connector_request_invalid"),  # INVALID_MERCHANT
    ("1352", "restricted_card"),  # RESTRICTED_OR_INACTIVE_ACCOUNT
    ("1360", "connector_request_invalid"),  # BAD_PROCESSING_CODE
    ("1370", "connector_request_invalid"),  # INVALID_MCC
    ("1380", "invalid_expiry_date"),  # INVALID_EXPIRATION
    ("1382", "invalid_cvc"),  # INVALID_CARD_VERIFICATION_VALUE
    ("1384", "connector_request_invalid"),  # INVALID_LIFE_CYCLE_OF_TRANSACTION
    ("1390", "connector_request_invalid"),  # INVALID_ORDER
    ("1393", "generic_decline"),  # TRANSACTION_CANNOT_BE_COMPLETED
    ("5100", "generic_decline"),  # GENERIC_DECLINE
    ("5110", "incorrect_cvc"),  # CVV2_FAILURE
    ("5120", "insufficient_funds"),  # INSUFFICIENT_FUNDS
    ("5130", "invalid_pin"),  # INVALID_PIN
    ("5135", "pin_try_exceeded"),  # DECLINED_PIN_TRY_EXCEEDED
    ("5140", "invalid_account"),  # CARD_CLOSED
    ("5150", "pickup_card"),  # PICKUP_CARD_SPECIAL_CONDITIONS
    ("5160", "not_permitted"),  # UNAUTHORIZED_USER
    ("5170", "incorrect_address"),  # AVS_FAILURE
    ("5180", "restricted_card"),  # INVALID_OR_RESTRICTED_CARD
    ("5190", "incorrect_address"),  # SOFT_AVS
    ("5200", "duplicate_transaction"),  # DUPLICATE_TRANSACTION
    ("5210", "transaction_not_allowed"),  # INVALID_TRANSACTION
    ("5400", "expired_card"),  # EXPIRED_CARD
    ("5500", "incorrect_pin"),  # INCORRECT_PIN_REENTER
    ("5650", "authentication_required"),  # DECLINED_SCA_REQUIRED
    ("5700", "transaction_not_allowed"),  # TRANSACTION_NOT_PERMITTED
    ("5710", "card_decline_rate_limit_exceeded"),  # TX_ATTEMPTS_EXCEED_LIMIT
    ("5910", "do_not_try_again"),  # ISSUER_NOT_AVAILABLE_NOT_RETRIABLE: PayPal says no retry
    ("5920", "issuer_not_available"),  # ISSUER_NOT_AVAILABLE_RETRIABLE
    ("5930", "call_issuer"),  # CARD_NOT_ACTIVATED: works once the holder activates it
    ("5950", "new_account_information_available"),  # DECLINED_DUE_TO_UPDATED_ACCOUNT
    ("6300", "invalid_account"),  # ACCOUNT_NOT_ON_FILE
    ("7700", "authentication_failed"),  # ERROR_3DS
    ("7710", "authentication_failed"),  # AUTHENTICATION_FAILED
    ("7800", "incorrect_number"),  # BIN_ERROR
    ("7900", "incorrect_pin"),  # PIN_ERROR
    # Processor and network faults reported *with* a declined payment: decided, so not in doubt.
    ("8000", "processing_error"),  # PROCESSOR_SYSTEM_ERROR
    ("8010", "processing_error"),  # HOST_KEY_ERROR
    ("8020", "connector_request_invalid"),  # CONFIGURATION_ERROR
    ("8030", "connector_request_invalid"),  # UNSUPPORTED_OPERATION
    ("8100", "processing_error"),  # FATAL_COMMUNICATION_ERROR
    ("8110", "processing_error"),  # RETRIABLE_COMMUNICATION_ERROR
    ("8220", "processing_error"),  # SYSTEM_UNAVAILABLE
    ("9100", "try_again_later"),  # DECLINED_PLEASE_RETRY
    ("9500", "fraudulent"),  # SUSPECTED_FRAUD
    ("9510", "security_violation"),  # SECURITY_VIOLATION
    ("9520", "lost_or_stolen_card"),  # LOST_OR_STOLEN
    ("9530", "call_issuer"),  # HOLD_CALL_CENTER
    ("9540", "generic_decline"),  # REFUSED_CARD, no reason given
    ("9600", "generic_decline"),  # UNRECOGNIZED_RESPONSE_CODE: a decline we cannot read
    ("PCVV", "incorrect_cvc"),  # CVV_FAILURE
    ("PP06", "invalid_account"),  # ACCOUNT_CLOSED
    ("PPAB", "restricted_card"),  # ACCOUNT_BLOCKED_BY_ISSUER
    ("PPAD", "incorrect_address"),  # BILLING_ADDRESS
    ("PPAE", "card_not_supported"),  # AMEX_DISABLED
    ("PPAX", "invalid_amount"),  # AMOUNT_EXCEEDED
    ("PPCT", "card_not_supported"),  # CARD_TYPE_UNSUPPORTED
    ("PPCU", "currency_not_supported"),  # CURRENCY_USED_INVALID
    ("PPD3", "authentication_failed"),  # SECURE_ERROR_3DS
    ("PPDT", "card_decline_rate_limit_exceeded"),  # DECLINE_THRESHOLD_BREACH
    ("PPEF", "expired_card"),  # EXPIRED_FUNDING_INSTRUMENT
    ("PPEL", "withdrawal_count_limit_exceeded"),  # EXCEEDS_FREQUENCY_LIMIT
    ("PPER", "processing_error"),  # INTERNAL_SYSTEM_ERROR
    ("PPEX", "invalid_expiry_date"),  # EXPIRY_DATE
    ("PPFI", "invalid_account"),  # INVALID_FUNDING_INSTRUMENT
    ("PPFR", "restricted_card"),  # RESTRICTED_FUNDING_INSTRUMENT
    ("PPMC", "card_not_supported"),  # BLOCKED_MASTERCARD
    ("PPNL", "card_decline_rate_limit_exceeded"),  # EXCEEDS_NETWORK_FREQUENCY_LIMIT
    ("PPNT", "processing_error"),  # NETWORK_ERROR
    ("PPRN", "do_not_try_again"),  # REATTEMPT_NOT_PERMITTED
    # Orders API issues (details[].issue).
    ("AGREEMENT_ALREADY_CANCELLED", "revocation_of_authorization"),
    ("CARD_BRAND_NOT_SUPPORTED", "card_not_supported"),
    ("CARD_EXPIRED", "expired_card"),
    ("COMPLIANCE_VIOLATION", "transaction_not_allowed"),
    ("DECLINED_DUE_TO_RELATED_TXN", "generic_decline"),
    # An earlier capture with this invoice id may be the one that succeeded.
    ("DUPLICATE_INVOICE_ID", "duplicate_transaction"),
    # "Declined by the processor or bank, or can't be used": no reason, so the soft default.
    ("INSTRUMENT_DECLINED", "generic_decline"),
    ("MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED", "card_decline_rate_limit_exceeded"),
    ("NOT_ENABLED_FOR_CARD_PROCESSING", "connector_request_invalid"),
    # The money already moved (or is moving): find that payment, do not make another.
    ("ORDER_ALREADY_CAPTURED", "duplicate_transaction"),
    ("ORDER_COMPLETION_IN_PROGRESS", "payment_in_progress"),
    ("ORDER_NOT_APPROVED", "authentication_required"),
    ("PAYEE_BLOCKED_TRANSACTION", "fraudulent"),  # the payee's own fraud settings
    ("PAYEE_NOT_ENABLED_FOR_CARD_PROCESSING", "connector_request_invalid"),
    ("PAYER_ACCOUNT_LOCKED_OR_CLOSED", "invalid_account"),
    ("PAYER_ACCOUNT_RESTRICTED", "invalid_account"),
    ("PAYER_ACTION_REQUIRED", "authentication_required"),
    ("PAYER_CANNOT_PAY", "payment_method_unusable"),
    ("REDIRECT_PAYER_FOR_ALTERNATE_FUNDING", "payment_method_unusable"),
    ("REFERENCED_CARD_EXPIRED", "expired_card"),
    ("TRANSACTION_BLOCKED_BY_PAYEE", "fraudulent"),
    ("TRANSACTION_LIMIT_EXCEEDED", "card_velocity_exceeded"),
    # The payee's receiving limit, not the payer's: another connector can take it.
    ("TRANSACTION_RECEIVING_LIMIT_EXCEEDED", "connector_request_invalid"),
    # "The request was refused", nothing more: the soft default for a decline.
    ("TRANSACTION_REFUSED", "generic_decline"),
    # Error names (https://developer.paypal.com/api/rest/responses/).
    ("AUTHENTICATION_FAILURE", "connector_credentials_invalid"),
    ("INTERNAL_SERVER_ERROR", "connector_error"),  # a 5xx after sending: in doubt
    ("INVALID_REQUEST", "connector_request_invalid"),
    ("NOT_AUTHORIZED", "connector_credentials_invalid"),
    ("RATE_LIMIT_REACHED", "rate_limit"),
    ("SERVICE_UNAVAILABLE", "connector_error"),
)

PROVIDERS: Final[frozenset[str]] = frozenset({"sandbox", "stripe", "adyen", "paypal"})

# The source list of TAXONOMY, one row per (provider, provider_code, payrail code). The sandbox
# answers with Stripe's codes verbatim, so it shares Stripe's rows.
ROWS: Final[tuple[tuple[str, str, str], ...]] = (
    *(("stripe", code, payrail) for code, payrail in _STRIPE),
    *(("sandbox", code, payrail) for code, payrail in _STRIPE),
    *(("adyen", code, payrail) for code, payrail in _ADYEN),
    *(("paypal", code, payrail) for code, payrail in _PAYPAL),
)

_BY_CODE: Final[Mapping[str, Classification]] = MappingProxyType(
    {
        code: Classification(code, decision, message)
        for code, (decision, message) in _PAYRAIL.items()
    }
)

CODES: Final[frozenset[str]] = frozenset(_BY_CODE)


def _build() -> Mapping[tuple[str, str], Classification]:
    table: dict[tuple[str, str], Classification] = {}
    for provider, provider_code, code in ROWS:
        key = (provider, provider_code)
        if key in table:
            raise RuntimeError(f"duplicate decline row {key}")
        table[key] = _BY_CODE[code]
    return MappingProxyType(table)


TAXONOMY: Final[Mapping[tuple[str, str], Classification]] = _build()

# An unknown code from a provider that answered is still a refusal: treat it as a soft decline.
# Never technical, which could fail over and charge the card elsewhere; never hard, which would
# drop a customer over a code we merely have not mapped yet.
UNKNOWN_DECLINE: Final[Classification] = _BY_CODE["generic_decline"]


def classify(provider: str, provider_code: str) -> Classification:
    """The classification of a provider's response code; unknown codes get ``UNKNOWN_DECLINE``."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    return TAXONOMY.get((provider, provider_code), UNKNOWN_DECLINE)


def classify_transport(*, sent: bool, status: int | None) -> Classification:
    """The classification of a failure that carries no provider decline code.

    ``sent`` says whether any byte of the request left us; ``status`` is the HTTP status, or
    None when no response arrived.
    """
    if not sent:
        if status is not None:
            raise ValueError("a response status means the request was sent")
        return _BY_CODE["connector_unreachable"]
    if status is None:
        # Timeout or connection lost after sending: the PSP may have charged.
        return _BY_CODE["timeout"]
    if not 400 <= status <= 599:
        raise ValueError(f"HTTP status {status} is not a failure")
    if status == 429:
        return _BY_CODE["rate_limit"]
    if status == 402:
        # A decline whose code we could not read (Stripe answers declines with 402).
        return UNKNOWN_DECLINE
    if status == 409:
        # An idempotency-key conflict: a request with the same key may be charging right now.
        return _BY_CODE["payment_in_progress"]
    if status >= 500:
        # Whether the PSP failed before or after processing is not provable from here.
        return _BY_CODE["connector_error"]
    # Our request was wrong: another attempt must fix it first, not repeat it.
    return _BY_CODE["connector_request_invalid"]
