"""Email over SMTP (smtplib): STARTTLS when configured, implicit TLS on port 465."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from labkeeper.notify.delivery import DeliveryError


def message(*, sender: str, to: Sequence[str], subject: str, body: str) -> EmailMessage:
    """A plain-text message."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="labkeeper")
    msg.set_content(body)
    return msg


def send(
    *,
    host: str,
    port: int,
    sender: str,
    to: Sequence[str],
    subject: str,
    body: str,
    username: str | None = None,
    password: str | None = None,
    starttls: bool = True,
    timeout: float = 10.0,
) -> None:
    """Send one message; DeliveryError says whether a retry may help."""
    msg = message(sender=sender, to=to, subject=subject, body=body)
    try:
        if port == 465:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client as smtp:
            smtp.ehlo()
            if starttls and port != 465:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if username:
                smtp.login(username, password or "")
            smtp.send_message(msg)
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(
            f"the SMTP server does not support this: {exc}", retryable=False
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP login refused ({exc.smtp_code})", retryable=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(
            f"the SMTP server refused the recipients: {', '.join(exc.recipients)}",
            retryable=False,
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(
            f"the SMTP server answered {exc.smtp_code}", retryable=exc.smtp_code < 500
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP failed ({type(exc).__name__}: {exc})") from None
