#!/usr/bin/env python3
"""Regenerate samples/tower-notes.tmx (en-US / de-DE / pt-PT translation memory).

All strings are UI strings and help-center sentences of the fictional app
"Tower Notes", written and translated by the tower-cat authors.  Part of the
memory is written out entry by entry (FIXED), part is produced from templates
over app objects with the correct German gender/case and Portuguese
gender/number agreement (OBJECTS x TEMPLATES).

The output is deterministic (no clock, no randomness):

    python samples/make_tmx.py            # writes samples/tower-notes.tmx
    python samples/make_tmx.py --check    # also checks glossary consistency

Mini-markup used in the strings below and turned into TMX inline codes:
``{name}``, ``%d``, ``%s`` -> ``<ph>``; ``<b>..</b>`` and ``<a>..</a>`` ->
``<bpt>``/``<ept>`` pairs whose content is the escaped native HTML tag.
"""
from __future__ import annotations

import csv
import datetime as _dt
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

HERE = Path(__file__).resolve().parent
OUT = HERE / "tower-notes.tmx"

# ---------------------------------------------------------------------------
# Hand-written entries: (en-US, de-DE, pt-PT, x-context or None)
# ---------------------------------------------------------------------------
FIXED: list[tuple[str, str, str, str | None]] = [
    # --- menus -------------------------------------------------------------
    ("File", "Datei", "Ficheiro", "Menu bar"),
    ("Edit", "Bearbeiten", "Editar", "Menu bar"),
    ("View", "Ansicht", "Ver", "Menu bar"),
    ("Insert", "Einfügen", "Inserir", "Menu bar"),
    ("Format", "Format", "Formatar", "Menu bar"),
    ("Tools", "Extras", "Ferramentas", None),
    ("Help", "Hilfe", "Ajuda", None),
    ("New window", "Neues Fenster", "Nova janela", None),
    ("Open…", "Öffnen…", "Abrir…", None),
    ("Save", "Speichern", "Guardar", None),
    ("Save as…", "Speichern unter…", "Guardar como…", None),
    ("Save all", "Alle speichern", "Guardar tudo", None),
    ("Print…", "Drucken…", "Imprimir…", None),
    ("Export as PDF", "Als PDF exportieren", "Exportar como PDF", None),
    ("Import notes…", "Notizen importieren…", "Importar notas…", None),
    ("Close window", "Fenster schließen", "Fechar janela", None),
    ("Quit Tower Notes", "Tower Notes beenden", "Sair do Tower Notes", None),
    ("Undo", "Rückgängig", "Anular", None),
    ("Redo", "Wiederholen", "Refazer", None),
    ("Cut", "Ausschneiden", "Cortar", None),
    ("Copy", "Kopieren", "Copiar", None),
    ("Paste", "Einfügen", "Colar", None),
    ("Paste as plain text", "Als reinen Text einfügen", "Colar como texto simples", None),
    ("Select all", "Alles auswählen", "Selecionar tudo", None),
    ("Find…", "Suchen…", "Localizar…", None),
    ("Find and replace…", "Suchen und ersetzen…", "Localizar e substituir…", None),
    ("Zoom in", "Vergrößern", "Ampliar", None),
    ("Zoom out", "Verkleinern", "Reduzir", None),
    ("Actual size", "Originalgröße", "Tamanho real", None),
    ("Show sidebar", "Seitenleiste einblenden", "Mostrar barra lateral", None),
    ("Hide sidebar", "Seitenleiste ausblenden", "Ocultar barra lateral", None),
    ("Enter focus mode", "Fokusmodus aktivieren", "Ativar o modo de foco", None),
    ("Bold", "Fett", "Negrito", None),
    ("Italic", "Kursiv", "Itálico", None),
    ("Underline", "Unterstrichen", "Sublinhado", None),
    ("Strikethrough", "Durchgestrichen", "Rasurado", None),
    ("Heading 1", "Überschrift 1", "Título 1", None),
    ("Heading 2", "Überschrift 2", "Título 2", None),
    ("Bulleted list", "Aufzählung", "Lista com marcas", None),
    ("Numbered list", "Nummerierte Liste", "Lista numerada", None),
    ("Insert link", "Link einfügen", "Inserir ligação", None),
    ("Insert image", "Bild einfügen", "Inserir imagem", None),
    ("Insert table", "Tabelle einfügen", "Inserir tabela", None),
    ("Code block", "Codeblock", "Bloco de código", None),
    ("Keyboard shortcuts", "Tastenkombinationen", "Atalhos de teclado", None),
    ("Help center", "Hilfe-Center", "Centro de ajuda", None),
    ("Send feedback", "Feedback senden", "Enviar feedback", None),
    ("What's new", "Neuigkeiten", "Novidades", None),
    ("About Tower Notes", "Über Tower Notes", "Acerca do Tower Notes", None),
    ("Check for updates", "Nach Updates suchen", "Procurar atualizações", None),
    # --- buttons -----------------------------------------------------------
    ("OK", "OK", "OK", None),
    ("Cancel", "Abbrechen", "Cancelar", None),
    ("Apply", "Übernehmen", "Aplicar", None),
    ("Close", "Schließen", "Fechar", "Dialog button"),
    ("Continue", "Weiter", "Continuar", None),
    ("Back", "Zurück", "Voltar", None),
    ("Next", "Weiter", "Seguinte", "Onboarding button"),
    ("Skip", "Überspringen", "Saltar", None),
    ("Retry", "Erneut versuchen", "Tentar novamente", None),
    ("Save changes", "Änderungen speichern", "Guardar alterações", None),
    ("Discard changes", "Änderungen verwerfen", "Descartar alterações", None),
    ("Don't save", "Nicht speichern", "Não guardar", None),
    ("Sign in", "Anmelden", "Iniciar sessão", None),
    ("Sign out", "Abmelden", "Terminar sessão", None),
    ("Create account", "Konto erstellen", "Criar conta", None),
    ("Forgot password?", "Passwort vergessen?", "Esqueceu-se da palavra-passe?", None),
    ("Reset password", "Passwort zurücksetzen", "Repor palavra-passe", None),
    ("Copy link", "Link kopieren", "Copiar ligação", None),
    ("Link copied to clipboard.", "Link in die Zwischenablage kopiert.",
     "Ligação copiada para a área de transferência.", None),
    ("Upgrade to Pro", "Auf Pro upgraden", "Atualizar para o Pro", None),
    ("Invite members", "Mitglieder einladen", "Convidar membros", None),
    ("Remove member", "Mitglied entfernen", "Remover membro", None),
    ("Mark as done", "Als erledigt markieren", "Marcar como concluída", "Task"),
    ("Restore", "Wiederherstellen", "Restaurar", None),
    ("Empty trash", "Papierkorb leeren", "Esvaziar o lixo", None),
    ("Learn more", "Weitere Informationen", "Saber mais", None),
    ("Get started", "Los geht's", "Começar", None),
    ("Try again later.", "Versuchen Sie es später erneut.", "Tente novamente mais tarde.", None),
    # --- ambiguous short strings, disambiguated by x-context ----------------
    ("Open", "Öffnen", "Abrir", "File menu"),
    ("Open", "Offen", "Aberta", "Task status"),
    ("Done", "Erledigt", "Concluída", "Task status"),
    ("Done", "Fertig", "Concluído", "Dialog button"),
    ("In progress", "In Bearbeitung", "Em curso", "Task status"),
    ("Draft", "Entwurf", "Rascunho", "Note status"),
    # --- settings ----------------------------------------------------------
    ("Settings", "Einstellungen", "Definições", None),
    ("Account settings", "Kontoeinstellungen", "Definições da conta", None),
    ("General", "Allgemein", "Geral", None),
    ("Appearance", "Darstellung", "Aspeto", None),
    ("Theme", "Design", "Tema", None),
    ("Light", "Hell", "Claro", "Theme"),
    ("Dark", "Dunkel", "Escuro", "Theme"),
    ("Use system setting", "Systemeinstellung verwenden", "Utilizar a definição do sistema", None),
    ("Language", "Sprache", "Idioma", None),
    ("Notifications", "Benachrichtigungen", "Notificações", None),
    ("Email notifications", "E-Mail-Benachrichtigungen", "Notificações por e-mail", None),
    ("Push notifications", "Push-Benachrichtigungen", "Notificações push", None),
    ("Privacy", "Datenschutz", "Privacidade", None),
    ("Security", "Sicherheit", "Segurança", None),
    ("Change password", "Passwort ändern", "Alterar palavra-passe", None),
    ("Two-factor authentication", "Zwei-Faktor-Authentifizierung", "Autenticação de dois fatores", None),
    ("Sync notes automatically", "Notizen automatisch synchronisieren",
     "Sincronizar notas automaticamente", None),
    ("Sync over mobile data", "Über mobile Daten synchronisieren",
     "Sincronizar através de dados móveis", None),
    ("Default notebook", "Standard-Notizbuch", "Bloco de notas predefinido", None),
    ("Font size", "Schriftgröße", "Tamanho do tipo de letra", None),
    ("Start of the week", "Wochenbeginn", "Início da semana", None),
    ("Date format", "Datumsformat", "Formato de data", None),
    ("Time zone", "Zeitzone", "Fuso horário", None),
    ("Show completed tasks", "Erledigte Aufgaben anzeigen", "Mostrar tarefas concluídas", None),
    ("Spell check", "Rechtschreibprüfung", "Verificação ortográfica", None),
    ("Open links in a new window", "Links in neuem Fenster öffnen",
     "Abrir ligações numa nova janela", None),
    ("Delete account", "Konto löschen", "Eliminar conta", None),
    ("Plan and billing", "Tarif und Abrechnung", "Plano e faturação", None),
    ("Integrations", "Integrationen", "Integrações", None),
    ("Connected apps", "Verbundene Apps", "Aplicações ligadas", None),
    ("Restore default settings", "Standardeinstellungen wiederherstellen",
     "Restaurar as definições predefinidas", None),
    ("Your settings have been saved.", "Ihre Einstellungen wurden gespeichert.",
     "As suas definições foram guardadas.", None),
    ("Reminder time", "Erinnerungszeit", "Hora do lembrete", None),
    ("Remind me 15 minutes before", "15 Minuten vorher erinnern", "Lembrar-me 15 minutos antes", None),
    ("Weekly summary email", "Wöchentliche Zusammenfassung per E-Mail", "Resumo semanal por e-mail", None),
    # --- errors ------------------------------------------------------------
    ("Something went wrong.", "Etwas ist schiefgelaufen.", "Ocorreu um erro.", None),
    ("You're offline. Changes will be synced when you reconnect.",
     "Sie sind offline. Änderungen werden synchronisiert, sobald Sie wieder verbunden sind.",
     "Está offline. As alterações serão sincronizadas quando voltar a estabelecer ligação.", None),
    ("Sync failed. Check your internet connection and try again.",
     "Die Synchronisierung ist fehlgeschlagen. Überprüfen Sie Ihre Internetverbindung und versuchen Sie es erneut.",
     "A sincronização falhou. Verifique a ligação à Internet e tente novamente.", None),
    ("The file could not be uploaded.", "Die Datei konnte nicht hochgeladen werden.",
     "Não foi possível carregar o ficheiro.", None),
    ("The file type .exe is not supported.", "Der Dateityp .exe wird nicht unterstützt.",
     "O tipo de ficheiro .exe não é suportado.", None),
    ("The file is too large. The maximum file size is 25 MB.",
     "Die Datei ist zu groß. Die maximale Dateigröße beträgt 25 MB.",
     "O ficheiro é demasiado grande. O tamanho máximo de ficheiro é 25 MB.", None),
    ("Incorrect email address or password.", "E-Mail-Adresse oder Passwort falsch.",
     "Endereço de e-mail ou palavra-passe incorretos.", None),
    ("Your password must contain at least 8 characters.",
     "Ihr Passwort muss mindestens 8 Zeichen enthalten.",
     "A palavra-passe tem de conter, pelo menos, 8 carateres.", None),
    ("Your session has expired. Please sign in again.",
     "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
     "A sua sessão expirou. Inicie sessão novamente.", None),
    ("This link has expired.", "Dieser Link ist abgelaufen.", "Esta ligação expirou.", None),
    ("You have reached the limit of 3 notebooks on the Free plan.",
     "Sie haben das Limit von 3 Notizbüchern im Free-Tarif erreicht.",
     "Atingiu o limite de 3 blocos de notas no plano Free.", None),
    ("The server is not responding. Please try again in a few minutes.",
     "Der Server antwortet nicht. Bitte versuchen Sie es in einigen Minuten erneut.",
     "O servidor não está a responder. Tente novamente dentro de alguns minutos.", None),
    ("Unable to connect to Tower Notes.",
     "Es konnte keine Verbindung zu Tower Notes hergestellt werden.",
     "Não foi possível estabelecer ligação ao Tower Notes.", None),
    ("This note is being edited by another user.",
     "Diese Notiz wird gerade von einem anderen Benutzer bearbeitet.",
     "Esta nota está a ser editada por outro utilizador.", None),
    ("A notebook with this name already exists.", "Es gibt bereits ein Notizbuch mit diesem Namen.",
     "Já existe um bloco de notas com este nome.", None),
    ("A tag with this name already exists.", "Es gibt bereits ein Tag mit diesem Namen.",
     "Já existe uma etiqueta com este nome.", None),
    ("The name cannot be empty.", "Der Name darf nicht leer sein.", "O nome não pode estar vazio.", None),
    ("The due date cannot be in the past.",
     "Das Fälligkeitsdatum darf nicht in der Vergangenheit liegen.",
     "A data limite não pode ser no passado.", None),
    ("You don't have access to this workspace. Ask an admin to invite you.",
     "Sie haben keinen Zugriff auf diesen Arbeitsbereich. Bitten Sie einen Administrator, Sie einzuladen.",
     "Não tem acesso a esta área de trabalho. Peça a um administrador que o convide.", None),
    ("Invalid email address.", "Ungültige E-Mail-Adresse.", "Endereço de e-mail inválido.", None),
    ("Page not found.", "Seite nicht gefunden.", "Página não encontrada.", None),
    ("Your changes could not be saved because you are offline.",
     "Ihre Änderungen konnten nicht gespeichert werden, da Sie offline sind.",
     "Não foi possível guardar as alterações porque está offline.", None),
    # --- dialogs -----------------------------------------------------------
    ("You have unsaved changes. Do you want to save them before closing?",
     "Sie haben nicht gespeicherte Änderungen. Möchten Sie sie vor dem Schließen speichern?",
     "Tem alterações não guardadas. Pretende guardar as alterações antes de fechar?", None),
    ("Empty the trash? All notes in the trash will be permanently deleted.",
     "Papierkorb leeren? Alle Notizen im Papierkorb werden endgültig gelöscht.",
     "Esvaziar o lixo? Todas as notas no lixo serão eliminadas permanentemente.", None),
    ("Leave workspace? You will lose access to all its projects and boards.",
     "Arbeitsbereich verlassen? Sie verlieren den Zugriff auf alle zugehörigen Projekte und Boards.",
     "Sair da área de trabalho? Perderá o acesso a todos os respetivos projetos e quadros.", None),
    ("Remove this member from the project?", "Dieses Mitglied aus dem Projekt entfernen?",
     "Remover este membro do projeto?", None),
    ("Discard this draft?", "Diesen Entwurf verwerfen?", "Descartar este rascunho?", None),
    # --- onboarding --------------------------------------------------------
    ("Welcome to Tower Notes!", "Willkommen bei Tower Notes!", "Bem-vindo ao Tower Notes!", None),
    ("Let's set up your workspace.", "Richten wir Ihren Arbeitsbereich ein.",
     "Vamos configurar a sua área de trabalho.", None),
    ("Name your workspace", "Geben Sie Ihrem Arbeitsbereich einen Namen",
     "Dê um nome à sua área de trabalho", None),
    ("Invite your team", "Laden Sie Ihr Team ein", "Convide a sua equipa", None),
    ("Create your first note", "Erstellen Sie Ihre erste Notiz", "Crie a sua primeira nota", None),
    ("Pick a template to get started quickly.", "Wählen Sie eine Vorlage, um schnell loszulegen.",
     "Escolha um modelo para começar rapidamente.", None),
    ("You can change this later in Settings.", "Sie können dies später in den Einstellungen ändern.",
     "Pode alterar isto mais tarde nas Definições.", None),
    ("You're all set!", "Alles bereit!", "Está tudo pronto!", None),
    ("Skip tour", "Tour überspringen", "Saltar apresentação", None),
    ("Step 2 of 4", "Schritt 2 von 4", "Passo 2 de 4", None),
    ("Capture ideas, organize tasks and share notes with your team, all in one place.",
     "Halten Sie Ideen fest, organisieren Sie Aufgaben und teilen Sie Notizen mit Ihrem Team – alles an einem Ort.",
     "Registe ideias, organize tarefas e partilhe notas com a sua equipa, tudo num só lugar.", None),
    ("Tip: Press Ctrl+K to search across all your notes.",
     "Tipp: Drücken Sie Strg+K, um alle Ihre Notizen zu durchsuchen.",
     "Sugestão: prima Ctrl+K para pesquisar em todas as suas notas.", None),
    ("Turn on reminders so you never miss a due date.",
     "Aktivieren Sie Erinnerungen, damit Sie kein Fälligkeitsdatum verpassen.",
     "Ative os lembretes para nunca perder uma data limite.", None),
    ("Install the mobile app to access your notes anywhere.",
     "Installieren Sie die mobile App, um überall auf Ihre Notizen zuzugreifen.",
     "Instale a aplicação móvel para aceder às suas notas em qualquer lugar.", None),
    # --- help center -------------------------------------------------------
    ("To create a new notebook, click the plus icon next to Notebooks in the sidebar.",
     "Um ein neues Notizbuch zu erstellen, klicken Sie in der Seitenleiste neben „Notizbücher“ auf das Plus-Symbol.",
     "Para criar um novo bloco de notas, clique no ícone de adição junto a Blocos de notas na barra lateral.", None),
    ("You can move a note to another notebook by dragging it onto the notebook in the sidebar.",
     "Sie können eine Notiz in ein anderes Notizbuch verschieben, indem Sie sie in der Seitenleiste auf das Notizbuch ziehen.",
     "Pode mover uma nota para outro bloco de notas arrastando-a para o bloco de notas na barra lateral.", None),
    ("Deleted notes stay in the trash for 30 days before they are permanently removed.",
     "Gelöschte Notizen bleiben 30 Tage lang im Papierkorb, bevor sie endgültig entfernt werden.",
     "As notas eliminadas ficam no lixo durante 30 dias antes de serem removidas permanentemente.", None),
    ("Tags help you find related notes quickly, even if they are stored in different notebooks.",
     "Mit Tags finden Sie zusammengehörige Notizen schnell, auch wenn sie in verschiedenen Notizbüchern gespeichert sind.",
     "As etiquetas ajudam a encontrar rapidamente notas relacionadas, mesmo que estejam guardadas em blocos de notas diferentes.", None),
    ("Each board shows the tasks of a project in columns, for example To do, In progress and Done.",
     "Jedes Board zeigt die Aufgaben eines Projekts in Spalten an, zum Beispiel „Zu erledigen“, „In Bearbeitung“ und „Erledigt“.",
     "Cada quadro mostra as tarefas de um projeto em colunas, por exemplo, Por fazer, Em curso e Concluída.", None),
    ("To assign a task, open it and select a member from the Assignee list.",
     "Um eine Aufgabe zuzuweisen, öffnen Sie sie und wählen Sie ein Mitglied aus der Liste „Zuständig“ aus.",
     "Para atribuir uma tarefa, abra-a e selecione um membro na lista Responsável.", None),
    ("Reminders are sent by email and as push notifications on your mobile devices.",
     "Erinnerungen werden per E-Mail und als Push-Benachrichtigungen an Ihre Mobilgeräte gesendet.",
     "Os lembretes são enviados por e-mail e como notificações push para os seus dispositivos móveis.", None),
    ("Only workspace admins can change the plan or add new members.",
     "Nur Administratoren des Arbeitsbereichs können den Tarif ändern oder neue Mitglieder hinzufügen.",
     "Apenas os administradores da área de trabalho podem alterar o plano ou adicionar novos membros.", None),
    ("When you share a notebook, all notes in it are shared as well.",
     "Wenn Sie ein Notizbuch teilen, werden auch alle darin enthaltenen Notizen geteilt.",
     "Quando partilha um bloco de notas, todas as notas nele contidas também são partilhadas.", None),
    ("Attachments larger than 25 MB cannot be uploaded on the Free plan.",
     "Anhänge, die größer als 25 MB sind, können im Free-Tarif nicht hochgeladen werden.",
     "No plano Free, não é possível carregar anexos com mais de 25 MB.", None),
    ("You can export a notebook as PDF, Markdown or HTML from the File menu.",
     "Sie können ein Notizbuch über das Menü „Datei“ als PDF, Markdown oder HTML exportieren.",
     "Pode exportar um bloco de notas como PDF, Markdown ou HTML a partir do menu Ficheiro.", None),
    ("Archived projects are read-only, but you can restore them at any time.",
     "Archivierte Projekte sind schreibgeschützt, Sie können sie aber jederzeit wiederherstellen.",
     "Os projetos arquivados são só de leitura, mas pode restaurá-los em qualquer altura.", None),
    ("Changes you make offline are synced automatically the next time you connect to the internet.",
     "Offline vorgenommene Änderungen werden automatisch synchronisiert, sobald Sie das nächste Mal mit dem Internet verbunden sind.",
     "As alterações que fizer offline são sincronizadas automaticamente da próxima vez que estabelecer ligação à Internet.", None),
    ("To change your password, go to Settings > Account > Security.",
     "Um Ihr Passwort zu ändern, gehen Sie zu Einstellungen > Konto > Sicherheit.",
     "Para alterar a palavra-passe, aceda a Definições > Conta > Segurança.", None),
    ("Templates let you reuse the structure of a note, such as meeting minutes or a weekly plan.",
     "Mit Vorlagen können Sie die Struktur einer Notiz wiederverwenden, etwa für Besprechungsprotokolle oder einen Wochenplan.",
     "Os modelos permitem reutilizar a estrutura de uma nota, como atas de reuniões ou um plano semanal.", None),
    ("The dashboard gives you an overview of your open tasks, upcoming reminders and recent notes.",
     "Das Dashboard bietet Ihnen einen Überblick über Ihre offenen Aufgaben, anstehenden Erinnerungen und letzten Notizen.",
     "O painel apresenta uma visão geral das suas tarefas abertas, dos próximos lembretes e das notas recentes.", None),
    ("Comments are visible to all members who have access to the note.",
     "Kommentare sind für alle Mitglieder sichtbar, die Zugriff auf die Notiz haben.",
     "Os comentários são visíveis para todos os membros que têm acesso à nota.", None),
    ("Use checklists to break a task into smaller steps.",
     "Verwenden Sie Checklisten, um eine Aufgabe in kleinere Schritte aufzuteilen.",
     "Utilize listas de verificação para dividir uma tarefa em passos mais pequenos.", None),
    ("You can add up to 10 attachments to a single task.",
     "Sie können einer einzelnen Aufgabe bis zu 10 Anhänge hinzufügen.",
     "Pode adicionar até 10 anexos a uma única tarefa.", None),
    ("If you forgot your password, click Forgot password? on the sign-in screen.",
     "Wenn Sie Ihr Passwort vergessen haben, klicken Sie auf dem Anmeldebildschirm auf „Passwort vergessen?“.",
     "Se se esqueceu da palavra-passe, clique em Esqueceu-se da palavra-passe? no ecrã de início de sessão.", None),
    ("Folders keep the files of a project organized.",
     "Mit Ordnern bleiben die Dateien eines Projekts übersichtlich.",
     "As pastas mantêm os ficheiros de um projeto organizados.", None),
    ("Every user has their own account and can belong to several workspaces.",
     "Jeder Benutzer hat ein eigenes Konto und kann mehreren Arbeitsbereichen angehören.",
     "Cada utilizador tem a sua própria conta e pode pertencer a várias áreas de trabalho.", None),
    ("Press Ctrl+Shift+N to create a new note from any screen.",
     "Drücken Sie Strg+Umschalt+N, um auf jedem Bildschirm eine neue Notiz zu erstellen.",
     "Prima Ctrl+Shift+N para criar uma nova nota a partir de qualquer ecrã.", None),
    ("Save the note as a template to reuse it in other projects.",
     "Speichern Sie die Notiz als Vorlage, um sie in anderen Projekten wiederzuverwenden.",
     "Guarde a nota como modelo para a reutilizar noutros projetos.", None),
    ("Share a board with people outside your workspace by sending them a link.",
     "Teilen Sie ein Board mit Personen außerhalb Ihres Arbeitsbereichs, indem Sie ihnen einen Link senden.",
     "Partilhe um quadro com pessoas fora da sua área de trabalho enviando-lhes uma ligação.", None),
    ("Archive a project when it is finished to keep your dashboard tidy.",
     "Archivieren Sie ein Projekt nach Abschluss, damit Ihr Dashboard übersichtlich bleibt.",
     "Arquive um projeto quando estiver concluído para manter o painel organizado.", None),
    ("The trash is emptied automatically every 30 days.",
     "Der Papierkorb wird alle 30 Tage automatisch geleert.",
     "O lixo é esvaziado automaticamente a cada 30 dias.", None),
    ("Members can edit notes and tasks, but only admins can delete a project.",
     "Mitglieder können Notizen und Aufgaben bearbeiten, aber nur Administratoren können ein Projekt löschen.",
     "Os membros podem editar notas e tarefas, mas apenas os administradores podem eliminar um projeto.", None),
    # --- inline codes and placeholders -------------------------------------
    ("Press <b>Ctrl+S</b> to save your note.",
     "Drücken Sie <b>Strg+S</b>, um Ihre Notiz zu speichern.",
     "Prima <b>Ctrl+S</b> para guardar a nota.", None),
    ("Read our <a>privacy policy</a> to learn how we use your data.",
     "Lesen Sie unsere <a>Datenschutzerklärung</a>, um zu erfahren, wie wir Ihre Daten verwenden.",
     "Leia a nossa <a>política de privacidade</a> para saber como utilizamos os seus dados.", None),
    ("Click <b>Share</b> and enter the email addresses of the people you want to invite.",
     "Klicken Sie auf <b>Teilen</b> und geben Sie die E-Mail-Adressen der Personen ein, die Sie einladen möchten.",
     "Clique em <b>Partilhar</b> e introduza os endereços de e-mail das pessoas que pretende convidar.", None),
    ("Are you sure you want to remove <b>{name}</b> from the workspace?",
     "Möchten Sie <b>{name}</b> wirklich aus dem Arbeitsbereich entfernen?",
     "Tem a certeza de que pretende remover <b>{name}</b> da área de trabalho?", None),
    ("Hello, {name}!", "Hallo {name}!", "Olá, {name}!", None),
    ("{name} shared the notebook {notebook} with you.",
     "{name} hat das Notizbuch {notebook} mit Ihnen geteilt.",
     "{name} partilhou o bloco de notas {notebook} consigo.", None),
    ("{name} assigned you a task: {task}", "{name} hat Ihnen eine Aufgabe zugewiesen: {task}",
     "{name} atribuiu-lhe uma tarefa: {task}", None),
    ("{name} commented on {note}", "{name} hat {note} kommentiert", "{name} comentou {note}", None),
    ("Reminder: {task} is due today.", "Erinnerung: {task} ist heute fällig.",
     "Lembrete: a data limite de {task} é hoje.", None),
    ("Last edited by {name} on {date}", "Zuletzt bearbeitet von {name} am {date}",
     "Última edição por {name} em {date}", None),
    ("Uploading {file_name}…", "{file_name} wird hochgeladen…", "A carregar {file_name}…", None),
    ("Welcome back, {name}. You have {count} open tasks.",
     "Willkommen zurück, {name}. Sie haben {count} offene Aufgaben.",
     "Bem-vindo de volta, {name}. Tem {count} tarefas abertas.", None),
    ("Your trial ends in {days} days. Upgrade to keep all features.",
     "Ihr Testzeitraum endet in {days} Tagen. Führen Sie ein Upgrade durch, um alle Funktionen zu behalten.",
     "O seu período de avaliação termina dentro de {days} dias. Atualize para manter todas as funcionalidades.", None),
    ("Page %d of %d", "Seite %d von %d", "Página %d de %d", None),
    ("Could not open %s.", "%s konnte nicht geöffnet werden.", "Não foi possível abrir %s.", None),
    # --- numbers -----------------------------------------------------------
    ("The file is larger than 10 MB.", "Die Datei ist größer als 10 MB.", "O ficheiro tem mais de 10 MB.", None),
    ("The file is larger than 50 MB.", "Die Datei ist größer als 50 MB.", "O ficheiro tem mais de 50 MB.", None),
    ("The file is larger than 100 MB.", "Die Datei ist größer als 100 MB.", "O ficheiro tem mais de 100 MB.", None),
    ("Your trial ends in 1 day.", "Ihr Testzeitraum endet in 1 Tag.",
     "O seu período de avaliação termina dentro de 1 dia.", None),
    ("Your trial ends in 7 days.", "Ihr Testzeitraum endet in 7 Tagen.",
     "O seu período de avaliação termina dentro de 7 dias.", None),
    ("Your trial ends in 14 days.", "Ihr Testzeitraum endet in 14 Tagen.",
     "O seu período de avaliação termina dentro de 14 dias.", None),
    ("You can invite up to 5 members on the Free plan.", "Im Free-Tarif können Sie bis zu 5 Mitglieder einladen.",
     "No plano Free, pode convidar até 5 membros.", None),
    ("You can invite up to 10 members on the Free plan.", "Im Free-Tarif können Sie bis zu 10 Mitglieder einladen.",
     "No plano Free, pode convidar até 10 membros.", None),
    ("Storage used: 2.5 GB of 10 GB", "Belegter Speicher: 2,5 GB von 10 GB",
     "Armazenamento utilizado: 2,5 GB de 10 GB", None),
    ("Storage used: 7.8 GB of 100 GB", "Belegter Speicher: 7,8 GB von 100 GB",
     "Armazenamento utilizado: 7,8 GB de 100 GB", None),
    ("Last synced 1 minute ago", "Zuletzt vor 1 Minute synchronisiert", "Última sincronização há 1 minuto", None),
    ("Last synced 5 minutes ago", "Zuletzt vor 5 Minuten synchronisiert", "Última sincronização há 5 minutos", None),
    ("Last synced 30 minutes ago", "Zuletzt vor 30 Minuten synchronisiert",
     "Última sincronização há 30 minutos", None),
    ("1 task due this week", "1 Aufgabe diese Woche fällig", "1 tarefa com data limite esta semana", None),
    ("12 tasks due this week", "12 Aufgaben diese Woche fällig", "12 tarefas com data limite esta semana", None),
    ("Notes in the trash are deleted after 60 days.", "Notizen im Papierkorb werden nach 60 Tagen gelöscht.",
     "As notas no lixo são eliminadas após 60 dias.", None),
    ("Version 3.2.1 is available.", "Version 3.2.1 ist verfügbar.", "A versão 3.2.1 está disponível.", None),
    ("Uploaded 3 of 8 files", "3 von 8 Dateien hochgeladen", "3 de 8 ficheiros carregados", None),
]

# ---------------------------------------------------------------------------
# Objects with grammar: en sg/pl; de gender, sg, pl; pt gender, sg, pl
# ---------------------------------------------------------------------------
OBJECTS: dict[str, tuple[str, str, str, str, str, str, str, str]] = {
    # key:          en sg,        en pl,          de g, de sg,            de pl,               pt g, pt sg,                  pt pl
    "note":       ("note",       "notes",       "f", "Notiz",          "Notizen",          "f", "nota",                  "notas"),
    "notebook":   ("notebook",   "notebooks",   "n", "Notizbuch",      "Notizbücher",      "m", "bloco de notas",        "blocos de notas"),
    "task":       ("task",       "tasks",       "f", "Aufgabe",        "Aufgaben",         "f", "tarefa",                "tarefas"),
    "board":      ("board",      "boards",      "n", "Board",          "Boards",           "m", "quadro",                "quadros"),
    "project":    ("project",    "projects",    "n", "Projekt",        "Projekte",         "m", "projeto",               "projetos"),
    "workspace":  ("workspace",  "workspaces",  "m", "Arbeitsbereich", "Arbeitsbereiche",  "f", "área de trabalho",      "áreas de trabalho"),
    "tag":        ("tag",        "tags",        "n", "Tag",            "Tags",             "f", "etiqueta",              "etiquetas"),
    "reminder":   ("reminder",   "reminders",   "f", "Erinnerung",     "Erinnerungen",     "m", "lembrete",              "lembretes"),
    "template":   ("template",   "templates",   "f", "Vorlage",        "Vorlagen",         "m", "modelo",                "modelos"),
    "attachment": ("attachment", "attachments", "m", "Anhang",         "Anhänge",          "m", "anexo",                 "anexos"),
    "comment":    ("comment",    "comments",    "m", "Kommentar",      "Kommentare",       "m", "comentário",            "comentários"),
    "folder":     ("folder",     "folders",     "m", "Ordner",         "Ordner",           "f", "pasta",                 "pastas"),
    "checklist":  ("checklist",  "checklists",  "f", "Checkliste",     "Checklisten",      "f", "lista de verificação",  "listas de verificação"),
    "file":       ("file",       "files",       "f", "Datei",          "Dateien",          "m", "ficheiro",              "ficheiros"),
    "member":     ("member",     "members",     "n", "Mitglied",       "Mitglieder",       "m", "membro",                "membros"),
}

DE_NEW = {"m": "Neuer", "f": "Neue", "n": "Neues"}          # strong adjective, nominative
DE_DEF_NOM = {"m": "Der", "f": "Die", "n": "Das"}
DE_THIS_ACC = {"m": "diesen", "f": "diese", "n": "dieses"}
PT_NEW = {"m": "Novo", "f": "Nova"}
PT_DEF = {"m": "o", "f": "a"}
PT_OF_THE = {"m": "do", "f": "da"}
PT_THIS = {"m": "este", "f": "esta"}
PT_NONE = {"m": "Nenhum", "f": "Nenhuma"}
PT_PART_SG = {"m": "o", "f": "a"}      # eliminad-o / eliminad-a
PT_PART_PL = {"m": "os", "f": "as"}    # selecionad-os / selecionad-as


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _templates() -> list[tuple[str, list[str], object]]:
    """(name, object keys, function(obj) -> (en, de, pt))."""
    T = []

    def t(name, keys):
        def deco(fn):
            T.append((name, keys.split(), fn))
            return fn
        return deco

    @t("new", "note notebook task board project workspace tag reminder template folder checklist comment")
    def _(o):
        return (f"New {o.en}", f"{DE_NEW[o.dg]} {o.de}", f"{PT_NEW[o.pg]} {o.pt}")

    @t("delete", "note notebook task board project workspace tag reminder template attachment comment folder checklist file")
    def _(o):
        return (f"Delete {o.en}", f"{o.de} löschen", f"Eliminar {o.pt}")

    @t("rename", "note notebook board project workspace tag template folder checklist file")
    def _(o):
        return (f"Rename {o.en}", f"{o.de} umbenennen", f"Mudar o nome {PT_OF_THE[o.pg]} {o.pt}")

    @t("delete_q", "note notebook task board project workspace tag reminder template attachment comment folder checklist file")
    def _(o):
        return (f"Delete this {o.en}?", f"{_cap(DE_THIS_ACC[o.dg])} {o.de} löschen?",
                f"Eliminar {PT_THIS[o.pg]} {o.pt}?")

    @t("deleted", "note notebook task board project workspace tag reminder template attachment comment folder checklist file")
    def _(o):
        return (f"The {o.en} has been deleted.", f"{DE_DEF_NOM[o.dg]} {o.de} wurde gelöscht.",
                f"{_cap(PT_DEF[o.pg])} {o.pt} foi eliminad{PT_PART_SG[o.pg]}.")

    @t("selected", "note notebook task board file attachment comment tag")
    def _(o):
        return (f"{{count}} {o.en_pl} selected", f"{{count}} {o.de_pl} ausgewählt",
                f"{{count}} {o.pt_pl} selecionad{PT_PART_PL[o.pg]}")

    @t("none_found", "note notebook task board project tag reminder template file comment attachment member")
    def _(o):
        return (f"No {o.en_pl} found.", f"Keine {o.de_pl} gefunden.",
                f"{PT_NONE[o.pg]} {o.pt} encontrad{PT_PART_SG[o.pg]}.")

    @t("search", "note notebook task project template file tag board")
    def _(o):
        return (f"Search {o.en_pl}", f"{o.de_pl} durchsuchen", f"Pesquisar {o.pt_pl}")

    @t("to_trash", "note notebook task board project template file folder checklist")
    def _(o):
        return (f"Move {o.en} to trash", f"{o.de} in den Papierkorb verschieben", f"Mover {o.pt} para o lixo")

    @t("sure_delete", "note notebook task board project workspace template folder checklist file comment tag")
    def _(o):
        return (f"Are you sure you want to delete this {o.en}? This action cannot be undone.",
                f"Möchten Sie {DE_THIS_ACC[o.dg]} {o.de} wirklich löschen? "
                "Diese Aktion kann nicht rückgängig gemacht werden.",
                f"Tem a certeza de que pretende eliminar {PT_THIS[o.pg]} {o.pt}? Esta ação não pode ser anulada.")

    @t("share", "note notebook board project template file folder checklist")
    def _(o):
        return (f"Share {o.en}", f"{o.de} teilen", f"Partilhar {o.pt}")

    @t("archive", "note notebook board project workspace")
    def _(o):
        return (f"Archive {o.en}", f"{o.de} archivieren", f"Arquivar {o.pt}")

    @t("not_saved", "note task board template comment checklist reminder file")
    def _(o):
        return (f"The {o.en} could not be saved. Please try again.",
                f"{DE_DEF_NOM[o.dg]} {o.de} konnte nicht gespeichert werden. Bitte versuchen Sie es erneut.",
                f"Não foi possível guardar {PT_DEF[o.pg]} {o.pt}. Tente novamente.")

    @t("no_permission", "note notebook board project workspace template file folder")
    def _(o):
        return (f"You don't have permission to edit this {o.en}.",
                f"Sie haben keine Berechtigung, {DE_THIS_ACC[o.dg]} {o.de} zu bearbeiten.",
                f"Não tem permissão para editar {PT_THIS[o.pg]} {o.pt}.")

    @t("duplicate", "note board project template checklist task")
    def _(o):
        return (f"Duplicate {o.en}", f"{o.de} duplizieren", f"Duplicar {o.pt}")

    @t("add", "tag reminder attachment comment member task checklist file")
    def _(o):
        return (f"Add {o.en}", f"{o.de} hinzufügen", f"Adicionar {o.pt}")

    return T


class _Obj:
    def __init__(self, row):
        (self.en, self.en_pl, self.dg, self.de, self.de_pl, self.pg, self.pt, self.pt_pl) = row


def entries() -> list[tuple[str, str, str, str | None]]:
    out = list(FIXED)
    for _name, keys, fn in _templates():
        for k in keys:
            en, de, pt = fn(_Obj(OBJECTS[k]))
            out.append((en, de, pt, None))
    seen = set()
    for en, _de, _pt, ctx in out:
        key = (en, ctx)
        if key in seen:
            raise SystemExit(f"duplicate source: {key}")
        seen.add(key)
    return out


# ---------------------------------------------------------------------------
# Inline codes
# ---------------------------------------------------------------------------
NATIVE = {"<b>": "<b>", "</b>": "</b>",
          "<a>": '<a href="https://help.towernotes.example/privacy">', "</a>": "</a>"}
CODE_RE = re.compile(r"(\{[a-z_]+\}|%\d\$[sd]|%[sd]|</?[ab]>)")


def _codes(text: str) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    keys = []
    for m in CODE_RE.finditer(text):
        c = m.group(1)
        seen[c] = seen.get(c, 0) + 1
        keys.append((c, seen[c]))
    return keys


def segment(text: str, xmap: dict[tuple[str, int], int]) -> str:
    """Mini-markup -> TMX <seg> content; xmap gives the x attribute per code."""
    parts: list[str] = []
    pos = 0
    seen: dict[str, int] = {}
    stack: list[int] = []
    pair = 0
    for m in CODE_RE.finditer(text):
        parts.append(escape(text[pos:m.start()]))
        c = m.group(1)
        seen[c] = seen.get(c, 0) + 1
        x = xmap[(c, seen[c])]
        if c.startswith("</"):
            parts.append(f'<ept i="{stack.pop()}">{escape(NATIVE[c])}</ept>')
        elif c.startswith("<"):
            pair += 1
            stack.append(pair)
            parts.append(f'<bpt i="{pair}" x="{x}">{escape(NATIVE[c])}</bpt>')
        else:
            parts.append(f'<ph x="{x}">{escape(c)}</ph>')
        pos = m.end()
    parts.append(escape(text[pos:]))
    assert not stack, text
    return "".join(parts)


def _stamp(i: int, extra_days: int = 0) -> str:
    t = _dt.datetime(2024, 2, 1, 9, 0, 0) + _dt.timedelta(hours=5 * i, minutes=(i * 17) % 60, days=extra_days)
    return t.strftime("%Y%m%dT%H%M%SZ")


def build() -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<tmx version="1.4">',
        '  <header creationtool="tower-cat samples" creationtoolversion="1.0" datatype="plaintext"'
        ' segtype="sentence" adminlang="en-US" srclang="en-US" o-tmf="tower-cat"'
        f' creationdate="{_stamp(0)}">',
        '    <note>Tower Notes UI strings and help-center sentences (en-US, de-DE, pt-PT).'
        ' Generated by samples/make_tmx.py.</note>',
        "  </header>",
        "  <body>",
    ]
    for i, (en, de, pt, ctx) in enumerate(entries(), start=1):
        src_codes = _codes(en)
        xmap = {k: n for n, k in enumerate(src_codes, start=1)}
        for lang_text in (de, pt):
            if sorted(_codes(lang_text)) != sorted(src_codes):
                raise SystemExit(f"inline codes differ: {en!r} / {lang_text!r}")
        attrs = f'tuid="tn-{i:04d}" creationdate="{_stamp(i)}" creationid="tower-cat"'
        if i % 5 == 0:
            attrs += f' changedate="{_stamp(i, extra_days=12)}" changeid="reviewer"'
        lines.append(f"    <tu {attrs}>")
        if ctx:
            lines.append(f'      <prop type="x-context">{escape(ctx)}</prop>')
        for lang, text in (("en-US", en), ("de-DE", de), ("pt-PT", pt)):
            lines.append(f"      <tuv xml:lang={quoteattr(lang)}><seg>{segment(text, xmap)}</seg></tuv>")
        lines.append("    </tu>")
    lines += ["  </body>", "</tmx>", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Glossary consistency check (--check)
# ---------------------------------------------------------------------------
# Inflected target forms accepted in addition to the glossary lemma
# (German plurals with umlaut, Portuguese plurals of multi-word terms,
# verb forms).  Everything is compared case-insensitively.
EXTRA_FORMS = {
    "de": {"notebook": ["Notizbücher", "Notizbüchern"], "attachment": ["Anhänge"],
           "sync": ["synchronisier"], "share": ["teil"], "save": ["speicher"],
           "archive": ["archivier"]},
    "pt": {"notebook": ["blocos de notas"], "workspace": ["áreas de trabalho"],
           "checklist": ["listas de verificação"], "password": ["palavras-passe"],
           "sync": ["sincroniz"], "share": ["partilh"], "save": ["guard"], "archive": ["arquiv"]},
}


def _load_glossaries() -> dict[str, list[tuple[str, str, list[str]]]]:
    de = []
    with open(HERE / "glossary.de.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            forb = [f for f in row["forbidden"].split("|") if f]
            de.append((row["source"], row["target"], forb))
    pt = []
    for line in (HERE / "glossary.pt.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            s, t = line.split("\t")
            pt.append((s, t, []))
    return {"de": de, "pt": pt}


def check() -> int:
    gloss = _load_glossaries()
    pt_forbidden = ["arquivo", "usuário", "tela", "compartilh", "salvar", "senha", "configurações"]
    problems = 0
    hits = 0
    for en, de, pt, _ctx in entries():
        plain = CODE_RE.sub(" ", en).replace("Tower Notes", " ")
        for lang, target in (("de", de), ("pt", pt)):
            low = target.lower()
            forbidden = list(pt_forbidden) if lang == "pt" else []
            for s, t, forb in gloss[lang]:
                forbidden += forb
                if s == "Tower Notes":
                    if s in en and s not in target:
                        print(f"DNT: {en!r} -> {target!r}")
                        problems += 1
                    continue
                if not re.search(rf"\b{re.escape(s)}s?\b", plain, re.I):
                    continue
                hits += 1
                forms = [t] + EXTRA_FORMS[lang].get(s, [])
                if not any(f.lower() in low for f in forms):
                    print(f"TERM {s}->{t}: {en!r} -> {target!r}")
                    problems += 1
            for f in forbidden:
                if re.search(rf"\b{re.escape(f.lower())}", low):
                    print(f"FORBIDDEN {f}: {target!r}")
                    problems += 1
    print(f"{len(entries())} TUs, {hits} term occurrences checked, {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    OUT.write_text(build(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(HERE.parent)}")
    if "--check" in sys.argv:
        sys.exit(check())
