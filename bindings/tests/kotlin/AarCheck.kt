// Checks the AAR and POM that bindings/package.sh lays out, on the JVM (no Android toolchain
// here): the entries an AAR must have, native libraries only under known ABI directories, the
// manifest, classes.jar loading with JNA and holding the whole API, the consumer R8 rules
// keeping every class JNA reaches by reflection, and the POM's dependencies.
//
// Usage: java -cp ... dev.outpost.test.AarCheckKt AAR POM
package dev.outpost.test

import java.io.File
import java.net.URLClassLoader
import java.util.zip.ZipFile
import javax.xml.parsers.DocumentBuilderFactory
import org.w3c.dom.Element

val ANDROID_ABIS = setOf("arm64-v8a", "armeabi-v7a", "x86", "x86_64")

/** A ProGuard class pattern (`com.sun.jna.**`, `*`) as a regex over binary class names. */
fun proguardPattern(p: String): Regex =
    Regex(p.split("**").joinToString("[\\w.$]*") { part ->
        part.split("*").joinToString("[\\w$]*") { Regex.escape(it) }
    })

class KeepRule(val kind: String?, val superPattern: Regex?, val namePattern: Regex)

fun keepRules(text: String): List<KeepRule> =
    text.lines().map { it.trim() }.filter { it.startsWith("-keep class ") }.map { line ->
        val body = line.removePrefix("-keep class ").substringBefore("{").trim().split(Regex("\\s+"))
        when {
            body.size >= 3 && (body[1] == "extends" || body[1] == "implements") ->
                KeepRule(body[1], proguardPattern(body[2]), proguardPattern(body[0]))
            else -> KeepRule(null, null, proguardPattern(body[0]))
        }
    }

fun supertypes(c: Class<*>): List<Class<*>> {
    val all = mutableListOf<Class<*>>()
    var k: Class<*>? = c
    while (k != null) {
        all.add(k)
        all.addAll(k.interfaces.flatMap { supertypes(it) })
        k = k.superclass
    }
    return all
}

fun kept(c: Class<*>, rules: List<KeepRule>): Boolean = rules.any { r ->
    r.namePattern.matches(c.name) &&
        (r.superPattern == null || supertypes(c).drop(1).any { r.superPattern.matches(it.name) })
}

fun xml(bytes: ByteArray): Element =
    DocumentBuilderFactory.newInstance().apply { isNamespaceAware = true }
        .newDocumentBuilder().parse(bytes.inputStream()).documentElement

fun main(args: Array<String>) {
    val (aarPath, pomPath) = args
    val problems = mutableListOf<String>()
    fun require(ok: Boolean, what: () -> String) { if (!ok) problems.add(what()) }

    ZipFile(aarPath).use { aar ->
        val names = aar.entries().toList().map { it.name }
        for (entry in listOf("AndroidManifest.xml", "classes.jar", "proguard.txt", "R.txt")) {
            require(entry in names) { "the AAR has no $entry" }
        }
        val libs = names.filter { it.startsWith("jni/") && it.endsWith(".so") }
        require(libs.isNotEmpty()) { "the AAR has no native library under jni/<abi>/" }
        for (lib in libs) {
            val parts = lib.split("/")
            require(parts.size == 3 && parts[1] in ANDROID_ABIS && parts[2] == "liboutpost_ffi.so") {
                "$lib is not jni/<one of $ANDROID_ABIS>/liboutpost_ffi.so"
            }
        }
        val manifest = xml(aar.getInputStream(aar.getEntry("AndroidManifest.xml")).readBytes())
        require(manifest.getAttribute("package") == "dev.outpost") { "manifest package is not dev.outpost" }
        val permissions = manifest.getElementsByTagName("uses-permission").let { l ->
            (0 until l.length).map { (l.item(it) as Element).getAttributeNS("http://schemas.android.com/apk/res/android", "name") }
        }
        require("android.permission.INTERNET" in permissions) { "manifest lacks INTERNET: $permissions" }

        // classes.jar: load it with JNA beside it, as an app would.
        val jar = File.createTempFile("classes", ".jar")
        jar.deleteOnExit()
        jar.writeBytes(aar.getInputStream(aar.getEntry("classes.jar")).readBytes())
        val classNames = ZipFile(jar).use { z ->
            z.entries().toList().map { it.name }.filter { it.endsWith(".class") }
                .map { it.removeSuffix(".class").replace('/', '.') }
        }
        require(classNames.all { it.startsWith("dev.outpost.") && it.count { c -> c == '.' } == 2 }) {
            "classes.jar holds more than the dev.outpost package: ${classNames.filterNot { it.startsWith("dev.outpost.") }.take(5)}"
        }
        // JNA, coroutines and the Kotlin runtime come from the test's class path, as the POM's
        // dependencies bring them to an app.
        val loader = URLClassLoader(arrayOf(jar.toURI().toURL()), Thread.currentThread().contextClassLoader)
        val classes = classNames.map { Class.forName(it, false, loader) }
        for (api in listOf("dev.outpost.Outpost", "dev.outpost.OutpostFlowsKt", "dev.outpost.QueryWatch", "dev.outpost.DeviceCertificate")) {
            require(api in classNames) { "classes.jar lacks $api" }
        }

        // R8 keep rules: every class JNA reaches by reflection is kept.
        val rules = keepRules(aar.getInputStream(aar.getEntry("proguard.txt")).bufferedReader().readText())
        val jna = listOf("com.sun.jna.Structure", "com.sun.jna.Callback", "com.sun.jna.Library", "com.sun.jna.Native", "com.sun.jna.Pointer")
            .map { Class.forName(it) }
        for (c in jna) require(kept(c, rules)) { "proguard.txt does not keep ${c.name}" }
        val reflected = classes.filter { c ->
            supertypes(c).drop(1).any { s -> s.name.startsWith("com.sun.jna.") }
        }
        require(reflected.isNotEmpty()) { "no class of classes.jar extends a JNA type: the check checks nothing" }
        for (c in reflected) require(kept(c, rules)) { "proguard.txt does not keep ${c.name}, which JNA reaches by reflection" }
        println("aar: ${names.size} entries, ${libs.size} native libraries, ${classes.size} classes, ${reflected.size} JNA-reflected classes kept by ${rules.size} rules")
    }

    val pom = xml(File(pomPath).readBytes())
    val deps = pom.getElementsByTagName("dependency").let { l ->
        (0 until l.length).map { i ->
            val d = l.item(i) as Element
            fun f(tag: String) = d.getElementsByTagName(tag).item(0)?.textContent ?: ""
            Triple("${f("groupId")}:${f("artifactId")}", f("version"), f("type"))
        }
    }
    require(deps.any { it.first == "net.java.dev.jna:jna" && it.third == "aar" }) { "the POM lacks JNA @aar: $deps" }
    require(deps.any { it.first == "org.jetbrains.kotlinx:kotlinx-coroutines-android" }) { "the POM lacks kotlinx-coroutines-android: $deps" }
    require(pom.getElementsByTagName("packaging").item(0)?.textContent == "aar") { "the POM's packaging is not aar" }
    require(deps.all { it.second.isNotBlank() && !it.second.contains("@") }) { "a POM dependency has no version: $deps" }

    if (problems.isNotEmpty()) {
        problems.forEach { println("FAILED: $it") }
        kotlin.system.exitProcess(1)
    }
    println("aar: structure, manifest, classes, R8 rules and POM checked")
}
