import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Verify what the province's gateway sends an agency, with the JDK only (Java 17 or later; no
 * library): a push (Standard Webhooks HMAC-SHA256 and, when the subscription has `rfc9421`, the
 * RFC 9421 ECDSA P-256 signature with its Content-Digest) and a pull-feed page (detached JWS,
 * RFC 7797, ES256).
 *
 * <pre>
 * javac -d out VerifyAgency.java
 * java -cp out VerifyAgency push URL HEADERS_FILE BODY_FILE SECRET [PROVINCE_PUBLIC_KEY_PEM]
 * java -cp out VerifyAgency page PROVINCE_PUBLIC_KEY_PEM BODY_FILE FEED_SIGNATURE
 * </pre>
 *
 * HEADERS_FILE holds the request's headers, one `name: value` a line, as your HTTP server
 * received them; BODY_FILE the exact body bytes. Prints `VERIFIED ...` and exits 0, or prints
 * `REFUSED: reason` and exits 1: then drop the request (answer 401) or discard the page.
 */
public final class VerifyAgency {
    /** How far a push's timestamps may be from now. */
    static final long TOLERANCE_SECONDS = 5 * 60;

    static final class Refused extends Exception {
        Refused(String reason) {
            super(reason);
        }
    }

    /** Standard Webhooks: HMAC-SHA256 of "{id}.{timestamp}.{body}" with the shared secret. */
    static void verifyWebhook(Map<String, String> headers, byte[] body, String secret, long now)
            throws Refused, GeneralSecurityException {
        String id = need(headers, "webhook-id");
        long timestamp = Long.parseLong(need(headers, "webhook-timestamp"));
        if (Math.abs(now - timestamp) > TOLERANCE_SECONDS) {
            throw new Refused("webhook-timestamp is more than 5 minutes away");
        }
        byte[] key = Base64.getDecoder().decode(secret.startsWith("whsec_") ? secret.substring(6) : secret);
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        mac.update((id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8));
        byte[] expected = mac.doFinal(body);
        // Several signatures during a secret rotation: any one of them is enough.
        for (String sig : need(headers, "webhook-signature").split(" ")) {
            if (sig.startsWith("v1,")
                    && MessageDigest.isEqual(expected, Base64.getDecoder().decode(sig.substring(3)))) {
                return;
            }
        }
        throw new Refused("no webhook-signature matches the secret");
    }

    /** RFC 9421 (label sig1, ecdsa-p256-sha256) over the components the gateway covers. */
    static String verifyHttpSignature(
            String url, Map<String, String> headers, byte[] body, PublicKey key, long now)
            throws Refused, GeneralSecurityException {
        String digest = "sha-256=:"
                + Base64.getEncoder().encodeToString(MessageDigest.getInstance("SHA-256").digest(body)) + ":";
        if (!digest.equals(need(headers, "content-digest"))) {
            throw new Refused("content-digest does not match the body");
        }
        String input = need(headers, "signature-input");
        if (!input.startsWith("sig1=(")) {
            throw new Refused("no signature labelled sig1");
        }
        String params = input.substring("sig1=".length());
        int close = params.indexOf(')');
        List<String> components = new ArrayList<>();
        Matcher m = Pattern.compile("\"([^\"]+)\"").matcher(params.substring(1, close));
        while (m.find()) {
            components.add(m.group(1));
        }
        for (String needed : List.of("@method", "@target-uri", "content-digest")) {
            if (!components.contains(needed)) {
                throw new Refused("the signature does not cover " + needed);
            }
        }
        String created = param(params, "created", "(\\d+)");
        String keyid = param(params, "keyid", "\"([^\"]*)\"");
        param(params, "nonce", "\"([^\"]*)\""); // keep it and refuse one you saw before
        if (!"ecdsa-p256-sha256".equals(param(params, "alg", "\"([^\"]*)\""))) {
            throw new Refused("the signature is not ecdsa-p256-sha256");
        }
        if (Math.abs(now - Long.parseLong(created)) > TOLERANCE_SECONDS) {
            throw new Refused("the signature was created more than 5 minutes away");
        }
        StringBuilder base = new StringBuilder();
        for (String c : components) {
            String value = switch (c) {
                case "@method" -> "POST";
                case "@target-uri" -> url;
                default -> need(headers, c).trim();
            };
            base.append('"').append(c).append("\": ").append(value).append('\n');
        }
        base.append("\"@signature-params\": ").append(params);
        String sig = need(headers, "signature");
        if (!sig.startsWith("sig1=:") || !sig.endsWith(":")) {
            throw new Refused("no signature sig1");
        }
        byte[] raw = Base64.getDecoder().decode(sig.substring(6, sig.length() - 1));
        Signature v = Signature.getInstance("SHA256withECDSAinP1363Format");
        v.initVerify(key);
        v.update(base.toString().getBytes(StandardCharsets.UTF_8));
        if (!v.verify(raw)) {
            throw new Refused("the RFC 9421 signature does not verify with the province's key");
        }
        return keyid;
    }

    /** A feed page: detached JWS (b64=false) ES256 over the exact body bytes. */
    static void verifyPage(byte[] body, String jws, PublicKey key)
            throws Refused, GeneralSecurityException {
        String[] parts = jws.split("\\.", -1);
        if (parts.length != 3 || !parts[1].isEmpty()) {
            throw new Refused("the Feed-Signature is not a detached JWS");
        }
        String header = new String(Base64.getUrlDecoder().decode(parts[0]), StandardCharsets.UTF_8)
                .replace(" ", "");
        if (!header.contains("\"alg\":\"ES256\"") || !header.contains("\"b64\":false")) {
            throw new Refused("the page is not signed ES256 with an unencoded payload");
        }
        Signature v = Signature.getInstance("SHA256withECDSAinP1363Format");
        v.initVerify(key);
        v.update((parts[0] + ".").getBytes(StandardCharsets.US_ASCII));
        v.update(body);
        if (!v.verify(Base64.getUrlDecoder().decode(parts[2]))) {
            throw new Refused("the page's signature does not verify with the province's key");
        }
    }

    static PublicKey publicKey(Path pem) throws IOException, GeneralSecurityException {
        String text = Files.readString(pem)
                .replaceAll("-----[A-Z ]+-----", "")
                .replaceAll("\\s", "");
        return KeyFactory.getInstance("EC")
                .generatePublic(new X509EncodedKeySpec(Base64.getDecoder().decode(text)));
    }

    static Map<String, String> headers(Path file) throws IOException {
        Map<String, String> h = new LinkedHashMap<>();
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            int colon = line.indexOf(':');
            if (colon > 0) {
                h.put(line.substring(0, colon).trim().toLowerCase(Locale.ROOT), line.substring(colon + 1).trim());
            }
        }
        return h;
    }

    static String need(Map<String, String> headers, String name) throws Refused {
        String v = headers.get(name);
        if (v == null) {
            throw new Refused("no " + name + " header");
        }
        return v;
    }

    static String param(String params, String name, String value) throws Refused {
        Matcher m = Pattern.compile(";" + name + "=" + value).matcher(params);
        if (!m.find()) {
            throw new Refused("the signature has no " + name);
        }
        return m.group(1);
    }

    public static void main(String[] args) throws Exception {
        long now = System.currentTimeMillis() / 1000;
        try {
            if (args.length >= 5 && args[0].equals("push")) {
                Map<String, String> h = headers(Path.of(args[2]));
                byte[] body = Files.readAllBytes(Path.of(args[3]));
                verifyWebhook(h, body, args[4], now);
                String signedBy = "";
                if (args.length > 5) {
                    signedBy = " keyid=" + verifyHttpSignature(args[1], h, body, publicKey(Path.of(args[5])), now);
                }
                System.out.println("VERIFIED push " + h.get("webhook-id") + signedBy);
            } else if (args.length == 4 && args[0].equals("page")) {
                byte[] body = Files.readAllBytes(Path.of(args[2]));
                verifyPage(body, args[3], publicKey(Path.of(args[1])));
                System.out.println("VERIFIED page of " + body.length + " bytes");
            } else {
                System.err.println("usage: VerifyAgency push URL HEADERS BODY SECRET [PUBLIC_KEY_PEM]"
                        + " | page PUBLIC_KEY_PEM BODY SIGNATURE");
                System.exit(2);
            }
        } catch (Refused | GeneralSecurityException | IllegalArgumentException e) {
            System.out.println("REFUSED: " + e.getMessage());
            System.exit(1);
        }
    }
}
