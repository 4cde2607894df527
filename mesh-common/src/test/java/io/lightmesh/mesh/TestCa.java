package io.lightmesh.mesh;

import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Date;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A throwaway certificate authority for tests: a self-signed CA and leaf certificates it signs, written as PEM files
 * (certificate, PKCS#8 key, CA bundle), the form a Kubernetes TLS Secret mounts.
 */
public final class TestCa {
    private static final AtomicLong SERIAL = new AtomicLong(System.currentTimeMillis());
    private final KeyPair keys;
    private final X509Certificate cert;
    private final Path dir;

    private TestCa(Path dir, String name) throws GeneralSecurityException, IOException {
        this.dir = Files.createDirectories(dir);
        this.keys = keyPair();
        X500Name subject = new X500Name("CN=" + name);
        JcaX509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(subject, BigInteger.valueOf(SERIAL.incrementAndGet()),
                Date.from(Instant.now().minus(Duration.ofMinutes(5))), Date.from(Instant.now().plus(Duration.ofDays(1))), subject, keys.getPublic());
        b.addExtension(Extension.basicConstraints, true, new BasicConstraints(true));
        this.cert = sign(b, keys);
        Files.writeString(caFile(), pem("CERTIFICATE", cert.getEncoded()));
    }

    /** A new CA named {@code name}, its files under {@code dir}. */
    public static TestCa create(Path dir, String name) throws GeneralSecurityException, IOException { return new TestCa(dir, name); }

    /** The CA's certificate (PEM): what every service trusts. */
    public Path caFile() { return dir.resolve("ca.crt"); }

    /** A leaf certificate for {@code name} (also its DNS name; "localhost" and 127.0.0.1 are added) with its key. */
    public MeshTls issue(String name) throws GeneralSecurityException, IOException {
        KeyPair leaf = keyPair();
        JcaX509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(X500Name.getInstance(cert.getSubjectX500Principal().getEncoded()),
                BigInteger.valueOf(SERIAL.incrementAndGet()), Date.from(Instant.now().minus(Duration.ofMinutes(5))),
                Date.from(Instant.now().plus(Duration.ofDays(1))), new X500Name("CN=" + name), leaf.getPublic());
        b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName[] {
                new GeneralName(GeneralName.dNSName, name), new GeneralName(GeneralName.dNSName, "localhost"),
                new GeneralName(GeneralName.iPAddress, "127.0.0.1")}));
        X509Certificate c = sign(b, keys);
        Path certFile = dir.resolve(name + ".crt"), keyFile = dir.resolve(name + ".key");
        Files.writeString(certFile, pem("CERTIFICATE", c.getEncoded()));
        Files.writeString(keyFile, pem("PRIVATE KEY", leaf.getPrivate().getEncoded()));
        return new MeshTls(certFile, keyFile, caFile(), false);
    }

    private static KeyPair keyPair() throws GeneralSecurityException {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
        g.initialize(256);
        return g.generateKeyPair();
    }

    private static X509Certificate sign(JcaX509v3CertificateBuilder b, KeyPair issuer) throws GeneralSecurityException {
        try {
            ContentSigner signer = new JcaContentSignerBuilder("SHA256withECDSA").build(issuer.getPrivate());
            X509CertificateHolder h = b.build(signer);
            return new JcaX509CertificateConverter().getCertificate(h);
        } catch (org.bouncycastle.operator.OperatorCreationException e) {
            throw new GeneralSecurityException(e);
        }
    }

    private static String pem(String type, byte[] der) {
        return "-----BEGIN " + type + "-----\n" + Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(der) + "\n-----END " + type + "-----\n";
    }
}
